import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { type DbStack, startDbStack } from "@merch/devstack/db-stack";
import postgres from "postgres";
import { type DbClients, dbClients } from "./clients.ts";
import { ProductCache } from "./product-cache.ts";

// The cache in front of a real db-service on a real PostgreSQL, with a hand-moved clock.

let stack: DbStack;
let db: DbClients;
let sql: postgres.Sql;
before(async () => {
  stack = await startDbStack();
  db = dbClients(stack.baseUrl, "connect-h2", 2000);
  sql = postgres(stack.pg.url, { max: 1, onnotice: () => {} });
});
after(async () => {
  db?.close();
  await sql?.end();
  await stack?.stop();
});

const stockIn = async (cache: ProductCache, id: number) =>
  (JSON.parse((await cache.get(id)) ?? "null") as { stock: number } | null)?.stock;

test("a product page is never older than the TTL", async () => {
  let now = 1_000_000;
  const cache = new ProductCache(db, 1000, () => now);
  assert.equal(await stockIn(cache, 1), 500);
  await sql`UPDATE products SET stock = 480 WHERE id = 1`;
  now += 999;
  assert.equal(await stockIn(cache, 1), 500, "within the TTL the snapshot answers");
  now += 1;
  assert.equal(await stockIn(cache, 1), 480, "at the TTL it is read again");
  const list = JSON.parse(await cache.list()) as { id: number; stock: number; price: string }[];
  assert.deepEqual(
    list.map((p) => [p.id, p.stock, p.price]),
    [
      [1, 480, "49.99"],
      [2, 500, "19.99"],
      [3, 500, "9.99"],
    ],
  );
  assert.equal(await cache.get(424242), undefined, "unknown ids are left to db-service");
});

test("with a TTL of 0 every read goes to db-service", async () => {
  const cache = new ProductCache(db, 0);
  await sql`UPDATE products SET stock = 470 WHERE id = 2`;
  assert.equal(await stockIn(cache, 2), 470);
  await sql`UPDATE products SET stock = 469 WHERE id = 2`;
  assert.equal(await stockIn(cache, 2), 469);
});

test("after the TTL, a failed refresh fails the read instead of serving old data", async () => {
  let now = 5_000_000;
  const cache = new ProductCache(db, 1000, () => now);
  assert.equal(typeof (await stockIn(cache, 3)), "number");
  await stack.pg.stop();
  try {
    now += 500;
    assert.equal(typeof (await stockIn(cache, 3)), "number", "within the TTL the outage is not visible");
    now += 500;
    await assert.rejects(cache.get(3), (err: unknown) => err instanceof ConnectError && err.code === Code.Unavailable);
  } finally {
    await stack.pg.start();
  }
});
