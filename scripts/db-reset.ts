// `npm run db:reset -- --yes`: puts the store's database back to its seeded state.
// Drops the `public` schema (every user, order and session, and any product change) and the
// migration history, creates the schema again as a new database has it, and applies
// db-init/migrations (schema and seed), all in one transaction: it either happens completely or not at all. Without --yes it only says what it
// would do. The database is DATABASE_URL, or else the running `npm start` store's
// (scripts/store-db.ts). No psql needed.
import { parseArgs } from "node:util";
import { applyMigrations, MIGRATIONS_DIR } from "@merch/db-service/migrate";
import postgres from "postgres";
import { NoDatabaseError, redact, storeDatabase } from "./store-db.ts";

const TABLES = ["users", "products", "orders", "sessions"] as const;

const { values } = parseArgs({
  options: { yes: { type: "boolean", default: false }, help: { type: "boolean", short: "h", default: false } },
});
if (values.help) {
  console.log("usage: npm run db:reset -- --yes   (env: DATABASE_URL, or DATA_DIR of a running npm start)");
  process.exit(0);
}

let database: ReturnType<typeof storeDatabase>;
try {
  database = storeDatabase();
} catch (err) {
  if (!(err instanceof NoDatabaseError)) throw err;
  console.error(`db:reset: ${err.message}`);
  process.exit(2);
}
const target = `${redact(database.url)} (from ${database.source})`;
const sql = postgres(database.url, { max: 1, onnotice: () => {}, connect_timeout: 10 });

/** "3 users, 0 orders, ..." of the tables that exist. */
async function contents(): Promise<string> {
  const parts: string[] = [];
  for (const table of TABLES) {
    const [exists] = await sql`SELECT to_regclass(${`public.${table}`}) IS NOT NULL AS present`;
    if (!exists?.present) continue;
    const [row] = await sql`SELECT count(*)::int AS n FROM ${sql(table)}`;
    parts.push(`${row?.n} ${table}`);
  }
  return parts.length > 0 ? parts.join(", ") : "no store tables";
}

try {
  if (!values.yes) {
    let now: string;
    try {
      now = await contents();
    } catch (err) {
      now = `could not connect: ${(err as Error).message}`;
    }
    console.log(`db:reset would reset ${target}
  now: ${now}
  1. DROP SCHEMA public CASCADE (all users, orders, sessions, product changes) and the migration history
  2. CREATE SCHEMA public, as a new database has it
  3. apply the migrations in ${MIGRATIONS_DIR} (schema and the three seeded products, stock 500 each)
  in one transaction. Nothing was changed. Run it again with --yes to do it: npm run db:reset -- --yes`);
    process.exitCode = 1;
  } else {
    console.log(`db:reset: resetting ${target}`);
    await sql.begin(async (tx) => {
      // Waits at most this long behind a transaction in flight (db-service may be running).
      await tx`SET LOCAL lock_timeout = '10s'`;
      await tx.unsafe("DROP SCHEMA IF EXISTS public CASCADE");
      await tx.unsafe("DROP SCHEMA IF EXISTS drizzle CASCADE");
      await tx.unsafe("CREATE SCHEMA public AUTHORIZATION pg_database_owner");
      await tx.unsafe("GRANT USAGE ON SCHEMA public TO PUBLIC");
      await tx.unsafe("COMMENT ON SCHEMA public IS 'standard public schema'");
      await applyMigrations(tx);
    });
    console.log(`db:reset: done; the database now has ${await contents()}`);
  }
} catch (err) {
  console.error(`db:reset failed, nothing was changed (one transaction): ${(err as Error).message}`);
  process.exitCode = 1;
} finally {
  await sql.end();
}
