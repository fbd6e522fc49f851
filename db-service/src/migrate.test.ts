import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { startTestPostgres, type TestPostgres } from "@merch/testkit";
import { readMigrationFiles } from "drizzle-orm/migrator";
import postgres from "postgres";
import { MIGRATIONS_DIR, migrate } from "./migrate.ts";
import { putProduct } from "./test-support/index.ts";

// A store made before migrations existed (by the old db-init/init.sql, kept as
// db-init/init-before-migrations.sql), with data in it, is upgraded in place by the same
// migrations that make a new one, and ends up the same.

/** Every migration's tag, in order, from drizzle-kit's journal: a new migration needs no edit here. */
const TAGS = (
  JSON.parse(readFileSync(join(MIGRATIONS_DIR, "meta", "_journal.json"), "utf8")) as { entries: { tag: string }[] }
).entries.map((e) => e.tag);

let pg: TestPostgres;
let admin: postgres.Sql;
before(async () => {
  pg = await startTestPostgres();
  admin = postgres(pg.url, { max: 1, onnotice: () => {} });
});
after(async () => {
  await admin?.end();
  await pg?.destroy();
});

async function newDatabase(name: string): Promise<string> {
  await admin.unsafe(`CREATE DATABASE ${name}`);
  const url = new URL(pg.url);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Everything the schema is made of, in a form two databases can be compared by. */
async function catalog(url: string) {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const columns = await sql`
      SELECT table_name, column_name, data_type, character_maximum_length, is_nullable, column_default,
             is_identity, identity_generation, is_generated, generation_expression
      FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, column_name`;
    const constraints = await sql`
      SELECT conrelid::regclass::text AS table_name, conname, pg_get_constraintdef(oid) AS definition
      FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2`;
    const indexes = await sql`
      SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2`;
    const triggers = await sql`
      SELECT tgrelid::regclass::text AS table_name, tgname, pg_get_triggerdef(oid) AS definition
      FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2`;
    return { columns, constraints, indexes, triggers };
  } finally {
    await sql.end();
  }
}

// What drizzle.__drizzle_migrations holds for each migration in every database migrated so far
// (sha256 of the file, as drizzle computes it). A migration that was applied somewhere never
// changes, wherever its file lives: moving db-service/migrations to db-init/migrations kept them.
const APPLIED_HASHES: Record<number, string> = {
  0: "66fef1fc4c0ee502294d8c0f6ed40a891eeff61f459546109ca2a09482a12a12",
  1: "0de36e75db3fd7ab2bef03fdbc9b192897c80e0302baa6fc0d6b62c15dd71807",
  2: "17ee0f392ffbf57d8419d72bc334f91fff592e6feb29e84beb7db757eceabaa0",
};

test("the migrations are byte for byte the ones existing databases recorded", () => {
  const migrations = readMigrationFiles({ migrationsFolder: MIGRATIONS_DIR });
  for (const [index, hash] of Object.entries(APPLIED_HASHES)) {
    assert.equal(migrations[Number(index)]?.hash, hash, `migration ${index} changed after it was applied`);
  }
});

test("a database made by the old init.sql, with data, is upgraded in place and matches a new one", async () => {
  const legacy = await newDatabase("legacy");
  const sql = postgres(legacy, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(readFileSync(join(MIGRATIONS_DIR, "..", "init-before-migrations.sql"), "utf8"));
    const [alice] = await sql`
      INSERT INTO users (sid, username, email, password_hash) VALUES ('12110001', 'alice', 'alice@example.com', 'x')
      RETURNING id`;
    const [order] = await sql`
      INSERT INTO orders (user_id, product_id, quantity, unit_price) VALUES (${alice?.id}, 1, 2, 49.99) RETURNING id`;
    await sql`
      INSERT INTO idempotency_keys (user_id, key, request_hash, order_id)
      VALUES (${alice?.id}, 'checkout-1', ${"0".repeat(64)}, ${order?.id})`;
    await sql`UPDATE products SET stock = 498 WHERE id = 1`;

    const report = await migrate(legacy);
    assert.equal(report.adopted, true, "the old schema is taken as the first migration");
    // Adopted as 0000_init, the old schema gets every migration after it.
    assert.deepEqual(report.applied, TAGS.slice(1));

    const [kept] = await sql`SELECT id, quantity, total_price, idempotency_key FROM orders`;
    assert.deepEqual(
      { ...kept },
      { id: order?.id, quantity: 2, total_price: "99.98", idempotency_key: "checkout-1" },
      "the order keeps its key",
    );
    assert.deepEqual(
      (await sql`SELECT username FROM users`).map((r) => r.username),
      ["alice"],
    );
    assert.deepEqual(
      (await sql`SELECT id, stock FROM products ORDER BY id`).map((r) => [r.id, r.stock]),
      [
        [1, 498],
        [2, 500],
        [3, 500],
      ],
    );
    const [gone] = await sql`SELECT to_regclass('public.idempotency_keys') IS NULL AS gone`;
    assert.equal(gone?.gone, true);
    // A new product continues after the seeded ids, as before.
    assert.equal(await putProduct(sql, { name: "New" }), 4);
    await sql`DELETE FROM products WHERE id = 4`;
  } finally {
    await sql.end();
  }

  assert.deepEqual(await migrate(legacy), { applied: [], adopted: false }, "a second run changes nothing");
  const fresh = await newDatabase("fresh");
  const made = await migrate(fresh);
  assert.equal(made.adopted, false);
  assert.deepEqual(made.applied, TAGS);
  assert.deepEqual(await catalog(legacy), await catalog(fresh));
});

test("replicas starting together migrate once", async () => {
  const url = await newDatabase("together");
  const reports = await Promise.all(Array.from({ length: 4 }, () => migrate(url)));
  assert.equal(reports.filter((r) => r.applied.length === TAGS.length).length, 1);
  assert.equal(reports.filter((r) => r.applied.length === 0).length, 3);
});
