// `npm run db:migrate`: brings the store's database schema up to date with db-init/migrations
// (db-service does the same at start-up; this lets an operator do it first). The database is
// DATABASE_URL, or else the running `npm start` store's (scripts/store-db.ts).
import { migrate } from "@merch/db-service/migrate";
import { NoDatabaseError, redact, storeDatabase } from "./store-db.ts";

try {
  const database = storeDatabase();
  const report = await migrate(database.url);
  const what = report.applied.length > 0 ? `applied ${report.applied.join(", ")}` : "already up to date";
  console.log(`db:migrate: ${redact(database.url)} (from ${database.source}): ${what}`);
} catch (err) {
  console.error(`db:migrate: ${err instanceof NoDatabaseError ? err.message : (err as Error).stack}`);
  process.exitCode = err instanceof NoDatabaseError ? 2 : 1;
}
