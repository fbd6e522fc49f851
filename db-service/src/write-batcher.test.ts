import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ConnectError } from "@connectrpc/connect";
import { createLogger, ErrorReason, reasonOf } from "@merch/kit";
import type { TestPostgres } from "@merch/testkit";
import { sql as q } from "drizzle-orm";
import postgres from "postgres";
import { type Database, openDatabase, sqlState } from "./db.ts";
import { startMigratedPostgres } from "./test-support/index.ts";
import { type Caller, type Tx, WriteBatcher } from "./write-batcher.ts";

// The batcher against a real PostgreSQL, on a table of its own.

let pg: TestPostgres;
let sql: postgres.Sql;
let database: Database;
before(async () => {
  pg = await startMigratedPostgres();
  sql = postgres(pg.url, { max: 4, onnotice: () => {} });
  await sql`CREATE TABLE ledger (seq integer GENERATED ALWAYS AS IDENTITY, n integer NOT NULL UNIQUE)`;
  // Sleeps at COMMIT for the rows whose n asks it to: a commit that takes its time.
  await sql`CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_sleep(NEW.n / 100000.0); RETURN NULL; END $$`;
  await sql`CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON ledger DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.n >= 100000) EXECUTE FUNCTION slow_commit()`;
  database = openDatabase(
    { databaseUrl: pg.url, poolMax: 4, statementTimeoutMs: 5000, connectTimeoutS: 2 },
    createLogger("db-service", "silent"),
  );
  await database.run("test.warm-up", async () => {});
});
after(async () => {
  await database?.close();
  await sql?.end();
  await pg?.destroy();
});

const forever: Caller = { signal: new AbortController().signal, deadline: Number.POSITIVE_INFINITY };
const insert = (n: number) => async (tx: Tx) => {
  const rows = await tx.execute<{ n: number }>(q`INSERT INTO ledger (n) VALUES (${n}) RETURNING n`);
  return rows[0]?.n;
};
const inLedger = async (n: number) => (await sql`SELECT count(*)::int AS c FROM ledger WHERE n = ${n}`)[0]?.c;

async function commits(): Promise<number> {
  const [row] = await sql`SELECT xact_commit::int AS n FROM pg_stat_database WHERE datname = current_database()`;
  return Number(row?.n);
}

const reasonOfError = (err: unknown) => (err instanceof ConnectError ? reasonOf(err) : `not a refusal: ${err}`);

test("concurrent writes share transactions, keep their order, and each gets its own result", async () => {
  const batcher = new WriteBatcher(database);
  const before = await commits();
  const results = await Promise.all(
    Array.from({ length: 300 }, (_, n) => batcher.run("test.insert", insert(n), forever)),
  );
  assert.deepEqual(
    results,
    Array.from({ length: 300 }, (_, n) => n),
  );
  // pg_stat_database is updated asynchronously; wait for it to settle.
  await new Promise((r) => setTimeout(r, 700));
  const used = (await commits()) - before;
  assert.ok(used < 100, `300 statements took ${used} commits`);
  const order = await sql`SELECT n FROM ledger WHERE n < 300 ORDER BY seq`;
  assert.deepEqual(
    order.map((r) => r.n),
    Array.from({ length: 300 }, (_, n) => n),
  );
});

test("a failing write fails alone: the others of its batch still commit", async () => {
  const batcher = new WriteBatcher(database);
  const calls = [1000, 1001, 5, 1002].map((n) =>
    batcher.run("test.insert", insert(n), forever).then(
      (v) => v,
      (err: unknown) => `error ${sqlState(err)}`,
    ),
  );
  assert.deepEqual(await Promise.all(calls), [1000, 1001, "error 23505", 1002]);
  const [row] = await sql`SELECT count(*)::int AS c FROM ledger WHERE n BETWEEN 1000 AND 1002`;
  assert.equal(row?.c, 3);
});

test("a write whose caller's deadline has passed is not started, and says so", async () => {
  const batcher = new WriteBatcher(database);
  const late: Caller = { signal: new AbortController().signal, deadline: Date.now() - 1 };
  await assert.rejects(
    batcher.run("test.insert", insert(2000), late),
    (err) => reasonOfError(err) === ErrorReason.UPSTREAM_TIMEOUT,
  );
  assert.equal(await inLedger(2000), 0);
});

test("a caller that hangs up while its batch runs gets nothing committed; the rest of the batch commits", async () => {
  const batcher = new WriteBatcher(database);
  const leaving = new AbortController();
  // 150000 sleeps 1.5 s at commit: the caller leaves before that.
  const slow = batcher.run("test.insert", insert(150_000), forever);
  // A batch starts once its caller has queued what it asks for together: let this one start.
  await new Promise((r) => setImmediate(r));
  const gone = batcher.run("test.insert", insert(3000), { signal: leaving.signal, deadline: Number.POSITIVE_INFINITY });
  const stays = batcher.run("test.insert", insert(3001), forever);
  await slow;
  // gone and stays wait in the next batch; gone leaves before it runs or commits.
  leaving.abort();
  await assert.rejects(gone, (err) => reasonOfError(err) === ErrorReason.UPSTREAM_TIMEOUT);
  assert.equal(await stays, 3001);
  assert.equal(await inLedger(3000), 0, "nothing committed for a caller that left");
  assert.equal(await inLedger(3001), 1);
});

test("a write runs only until its caller's deadline (statement_timeout), then nothing is committed", async () => {
  const batcher = new WriteBatcher(database);
  const caller: Caller = { signal: new AbortController().signal, deadline: Date.now() + 300 };
  const started = Date.now();
  await assert.rejects(
    batcher.run(
      "test.slow",
      async (tx) => {
        await tx.execute(q`INSERT INTO ledger (n) VALUES (4000)`);
        await tx.execute(q`SELECT pg_sleep(3)`);
      },
      caller,
    ),
    (err) => reasonOfError(err) === ErrorReason.UPSTREAM_TIMEOUT || sqlState(err) === "57014",
  );
  assert.ok(Date.now() - started < 2000, "cut at the deadline, not after the sleep");
  assert.equal(await inLedger(4000), 0);
});

test("a connection lost during COMMIT is outcome_unknown, and the write is never run twice", async () => {
  const batcher = new WriteBatcher(database);
  // 120000 sleeps 1.2 s at commit; the pool is given up meanwhile, as when PostgreSQL freezes.
  const write = batcher.run("test.insert", insert(120_000), forever);
  await new Promise((r) => setTimeout(r, 400));
  database.reset("test: the connection is lost while committing");
  await assert.rejects(write, (err) => reasonOfError(err) === ErrorReason.OUTCOME_UNKNOWN);
  // PostgreSQL finished that commit on its own: the write did happen, once, and nobody ran it again.
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await inLedger(120_000), 1);
  // The database comes back (the next ping) and writes work again.
  const deadline = Date.now() + 5000;
  while (!database.up && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(await batcher.run("test.insert", insert(5000), forever), 5000);
});
