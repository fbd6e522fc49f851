import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createLogger } from "@merch/kit";
import {
  freePort,
  runService,
  type ServiceProcess,
  startTestPostgres,
  type TestPostgres,
  waitForOutput,
} from "@merch/testkit";
import postgres from "postgres";
import { type DbClients, dbClients } from "./clients.ts";
import { ProductCache } from "./product-cache.ts";

// The cache in front of a real db-service (its own process, as the gateway meets it) on a real
// PostgreSQL.

let pg: TestPostgres;
let service: ServiceProcess;
let db: DbClients;
let sql: postgres.Sql;
const logger = createLogger("gateway", "silent");
before(async () => {
  pg = await startTestPostgres();
  // db-service migrates the empty database at start-up, and says so once it serves.
  service = runService(
    "db-service",
    await freePort(),
    {
      DATABASE_URL: pg.url,
      DB_CONNECT_TIMEOUT_S: "2",
      SERVICE_CREDENTIAL: "product-cache-test-credential-0123456789abcdef",
    },
    "capture",
  );
  await waitForOutput(service, /"database":"up"/, 60_000);
  // Product reads need no service credential.
  db = dbClients(createConnectTransport({ baseUrl: service.url, httpVersion: "1.1", defaultTimeoutMs: 2000 }));
  sql = postgres(pg.url, { max: 1, onnotice: () => {} });
});
after(async () => {
  await sql?.end();
  await service?.stop();
  await pg?.destroy();
});

const stockIn = async (cache: ProductCache, id: number) => (await cache.get(id))?.stock;

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 5000): Promise<number> {
  const started = performance.now();
  while (!(await check())) {
    if (performance.now() - started > timeoutMs) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
  return performance.now() - started;
}

test("following db-service, a change made by anyone shows without reading again", async (t) => {
  const cache = new ProductCache(db, 1000, logger);
  cache.start();
  t.after(() => cache.close());
  await eventually("the cache follows the stream", async () => cache.following);
  assert.equal(await stockIn(cache, 1), 500);
  const changes: number[] = [];
  for (const stock of [490, 480, 470]) {
    // An operator's UPDATE: not through any gateway.
    await sql`UPDATE products SET stock = ${stock} WHERE id = 1`;
    changes.push(await eventually(`stock ${stock}`, async () => (await stockIn(cache, 1)) === stock));
  }
  // How fast is measured, not asserted (a busy machine may be slow): bench/ reports it.
  t.diagnostic(`changes reached the cache after ${changes.map((c) => c.toFixed(1)).join(", ")} ms`);
  const list = JSON.parse(await cache.listJson()) as { id: number; stock: number; price: string }[];
  assert.deepEqual(
    list.map((p) => [p.id, p.stock, p.price]),
    [
      [1, 470, "49.99"],
      [2, 500, "19.99"],
      [3, 500, "9.99"],
    ],
  );
  assert.equal(await cache.get(424242), undefined, "unknown ids are left to db-service");
  await sql`UPDATE products SET stock = 500 WHERE id = 1`;
});

test("following db-service, a change no trigger announces (a restore) shows within the TTL", async (t) => {
  let now = 2_000_000;
  const cache = new ProductCache(db, 1000, logger, () => now);
  cache.start();
  t.after(() => cache.close());
  await eventually("the cache follows the stream", async () => cache.following);
  // A product of its own: no change announced earlier can still be on its way for it.
  const [row] = await sql<{ id: number }[]>`
    INSERT INTO products (name, category, price, stock) VALUES ('Restored', 'Test', 1, 50) RETURNING id`;
  const id = row?.id ?? 0;
  await eventually("the new product shows", async () => (await stockIn(cache, id)) === 50);
  // What pg_restore --disable-triggers does: the rows change and nothing is notified.
  await sql.begin(async (tx) => {
    await tx`SET LOCAL session_replication_role = replica`;
    await tx`UPDATE products SET stock = 321 WHERE id = ${id}`;
  });
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(await stockIn(cache, id), 50, "nothing announced it, and the snapshot is young");
  // Half the TTL on, a read starts in the background; the page never waits for it.
  now += 500;
  await eventually("read again before the TTL", async () => (await stockIn(cache, id)) === 321);
  assert.ok(cache.following);
  await sql`DELETE FROM products WHERE id = ${id}`;
});

test("following db-service, a DELETE sends the whole catalogue again", async (t) => {
  const cache = new ProductCache(db, 60_000, logger);
  cache.start();
  t.after(() => cache.close());
  await eventually("the cache follows the stream", async () => cache.following);
  const [row] = await sql<{ id: number }[]>`
    INSERT INTO products (name, category, price, stock) VALUES ('Short-lived', 'Test', 1, 5) RETURNING id`;
  const id = row?.id ?? 0;
  await eventually("the new product shows", async () => (await stockIn(cache, id)) === 5);
  await sql`DELETE FROM products WHERE id = ${id}`;
  await eventually("the deleted product is gone", async () => (await cache.get(id)) === undefined);
  assert.deepEqual(
    (await cache.list()).map((p) => p.id),
    [1, 2, 3],
  );
});

test("following db-service, a product archived anywhere leaves the pages, and comes back with its place", async (t) => {
  const cache = new ProductCache(db, 1000, logger);
  cache.start();
  t.after(() => cache.close());
  await eventually("the cache follows the stream", async () => cache.following);
  const ids = async () => (JSON.parse(await cache.listJson()) as { id: number }[]).map((p) => p.id);
  // Archived by staff through another gateway: this one hears it from the stream alone.
  await sql`UPDATE products SET archived = true WHERE id = 2`;
  await eventually("archived", async () => (await cache.get(2)) === undefined);
  assert.deepEqual(await ids(), [1, 3]);
  await sql`UPDATE products SET archived = false WHERE id = 2`;
  await eventually("back", async () => (await cache.get(2)) !== undefined);
  assert.deepEqual(await ids(), [1, 2, 3], "listed by id again");
});

test("a product a write answered with is applied at once", async () => {
  const cache = new ProductCache(db, 60_000, logger);
  const before = await cache.get(2);
  assert.ok(before);
  cache.apply({ ...before, stock: 123 });
  assert.equal(await stockIn(cache, 2), 123);
  assert.equal((JSON.parse(await cache.listJson()) as { stock: number }[])[1]?.stock, 123);
});

test("not following, a product page is never older than the TTL", async () => {
  let now = 1_000_000;
  const cache = new ProductCache(db, 1000, logger, () => now);
  assert.equal(await stockIn(cache, 1), 500);
  await sql`UPDATE products SET stock = 480 WHERE id = 1`;
  now += 999;
  assert.equal(await stockIn(cache, 1), 500, "within the TTL the snapshot answers");
  now += 1;
  assert.equal(await stockIn(cache, 1), 480, "at the TTL it is read again");
  await sql`UPDATE products SET stock = 500 WHERE id = 1`;
});

test("with a TTL of 0 every read goes to db-service", async () => {
  const cache = new ProductCache(db, 0, logger);
  cache.start();
  await sql`UPDATE products SET stock = 470 WHERE id = 2`;
  assert.equal(await stockIn(cache, 2), 470);
  await sql`UPDATE products SET stock = 469 WHERE id = 2`;
  assert.equal(await stockIn(cache, 2), 469);
  await cache.close();
});

test("when the database goes away, the stream is lost, pages age to the TTL and then fail; it is followed again after", async (t) => {
  let now = 5_000_000;
  const cache = new ProductCache(db, 1000, logger, () => now);
  cache.start();
  t.after(() => cache.close());
  await eventually("the cache follows the stream", async () => cache.following);
  await pg.stop();
  try {
    await eventually("the stream is lost", async () => !cache.following, 10_000);
    now += 500;
    assert.equal(typeof (await stockIn(cache, 3)), "number", "within the TTL the outage is not visible");
    now += 500;
    await assert.rejects(cache.get(3), (err: unknown) => err instanceof ConnectError && err.code === Code.Unavailable);
  } finally {
    await pg.start();
  }
  await eventually("the cache follows the stream again", async () => cache.following, 15_000);
  await sql`UPDATE products SET stock = 321 WHERE id = 3`;
  await eventually("a change after the outage shows", async () => (await stockIn(cache, 3)) === 321);
  await sql`UPDATE products SET stock = 500 WHERE id = 3`;
});
