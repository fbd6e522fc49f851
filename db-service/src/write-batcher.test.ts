import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startTestPostgres, type TestPostgres } from "@merch/devstack/postgres";
import { sql as q } from "drizzle-orm";
import postgres from "postgres";
import { sqlState } from "./db.ts";
import { WriteBatcher } from "./write-batcher.ts";

let pg: TestPostgres;
let sql: postgres.Sql;
before(async () => {
  pg = await startTestPostgres();
  sql = postgres(pg.url, { max: 4, onnotice: () => {} });
  await sql`CREATE TABLE ledger (seq integer GENERATED ALWAYS AS IDENTITY, n integer NOT NULL UNIQUE)`;
});
after(async () => {
  await sql?.end();
  await pg?.destroy();
});

async function commits(): Promise<number> {
  const [row] = await sql`SELECT xact_commit::int AS n FROM pg_stat_database WHERE datname = current_database()`;
  return Number(row?.n);
}

test("concurrent statements share transactions, keep their order, and each gets its own rows", async () => {
  const batcher = new WriteBatcher(sql);
  const before = await commits();
  const results = await Promise.all(
    Array.from({ length: 300 }, (_, n) =>
      batcher.run<{ n: number }>(q`INSERT INTO ledger (n) VALUES (${n}) RETURNING n`),
    ),
  );
  assert.deepEqual(
    results.map((rows) => rows[0]?.n),
    Array.from({ length: 300 }, (_, n) => n),
  );
  // pg_stat_database is updated asynchronously; wait for it to settle.
  await new Promise((r) => setTimeout(r, 700));
  const used = (await commits()) - before;
  assert.ok(used < 100, `300 statements took ${used} commits`);
  const order = await sql`SELECT n FROM ledger ORDER BY seq`;
  assert.deepEqual(
    order.map((r) => r.n),
    Array.from({ length: 300 }, (_, n) => n),
  );
});

test("a failing statement fails alone: the others of its batch still commit", async () => {
  const batcher = new WriteBatcher(sql);
  const calls = [1000, 1001, 5, 1002].map((n) =>
    batcher.run<{ n: number }>(q`INSERT INTO ledger (n) VALUES (${n}) RETURNING n`).then(
      (rows) => rows[0]?.n,
      (err: unknown) => `error ${sqlState(err)}`,
    ),
  );
  assert.deepEqual(await Promise.all(calls), [1000, 1001, "error 23505", 1002]);
  const [row] = await sql`SELECT count(*)::int AS c FROM ledger WHERE n >= 1000`;
  assert.equal(row?.c, 3);
});
