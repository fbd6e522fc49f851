import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { createLogger } from "@merch/kit";
import { rejectsWith } from "@merch/testkit";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { type Database, openDatabase } from "./db.ts";
import { ORDER_BATCH_STATEMENTS, OrderBatch, type OrderOutcome, type OrderRequest } from "./order-batch.ts";
import * as schema from "./schema.ts";
import { type DbStack, newProduct, newUser, sessionOf, startDbStack, stockOf } from "./test-support/index.ts";

// One batch of orders, placed by the two statements of order-batch.ts against a real PostgreSQL:
// every request gets the answer it would have had alone, in arrival order.

let stack: DbStack;
let database: Database;
let sql: postgres.Sql;
before(async () => {
  stack = await startDbStack();
  database = openDatabase(
    { databaseUrl: stack.pg.url, poolMax: 2, statementTimeoutMs: 5000, connectTimeoutS: 2 },
    createLogger("db-service", "silent"),
  );
  sql = postgres(stack.pg.url, { max: 1, onnotice: () => {} });
});
after(async () => {
  await sql?.end();
  await database?.close();
  await stack?.stop();
});

/** Places the requests as one batch, in this order, in one transaction. */
async function placeBatch(requests: OrderRequest[]): Promise<OrderOutcome[]> {
  return database.db.transaction(async (tx) => {
    const batch = new OrderBatch(tx);
    const answers = requests.map((r) => batch.join(r));
    await batch.flush();
    return Promise.all(answers);
  });
}

const c = () => stack.clients("gRPC over h2c");

describe("a batch of orders", () => {
  test("answers each request as if alone: placed, replays, again, unknown product, ended session, stock", async () => {
    const alice = sessionOf(await newUser(c(), "alice"));
    const bob = sessionOf(await newUser(c(), "bob"));
    const gone = await newUser(c(), "gone");
    await c().users.endSession({ session: sessionOf(gone) });
    const tight = await newProduct(stack.pg.url, 4, "5.00");
    const roomy = await newProduct(stack.pg.url, 100, "1.25");
    const archived = await newProduct(stack.pg.url, 100);
    await sql`UPDATE products SET archived = true WHERE id = ${archived}`;

    // A key alice used before this batch: its order is replayed, or refused as another request.
    const earlier = await c().orders.placeOrder({
      session: alice,
      productId: roomy,
      quantity: 2,
      idempotencyKey: "k-old",
    });
    assert.ok(earlier.order);

    // Keys with the characters an array literal escapes must still arrive intact.
    const odd = 'k "quoted", {braced} \\ back';
    const outcomes = await placeBatch([
      { session: alice, productId: tight, quantity: 3, key: "k1" }, // placed: 4 → 1
      { session: bob, productId: tight, quantity: 2, key: "k2" }, // 1 left: insufficient
      { session: alice, productId: roomy, quantity: 2, key: "k-old" }, // replay
      { session: bob, productId: tight, quantity: 1, key: odd }, // still fits after the refusal: 1 → 0
      { session: alice, productId: 987654, quantity: 1, key: "k3" }, // no such product
      { session: sessionOf(gone), productId: roomy, quantity: 1, key: "k4" }, // session ended
      { session: alice, productId: tight, quantity: 1, key: "k1" }, // same key as the first: again
      { session: bob, productId: roomy, quantity: 3, key: "k5" }, // placed: 98 → 97 … 100 - 3
      { session: { userId: bob.userId, sessionId: "not-a-uuid" }, productId: roomy, quantity: 1, key: "k6" },
      { session: undefined, productId: roomy, quantity: 1, key: "k7" },
      { session: alice, productId: tight, quantity: 1, key: "k8" }, // nothing left: insufficient, 0
      { session: bob, productId: archived, quantity: 1, key: "k9" }, // no longer sold
    ]);

    assert.deepEqual(
      outcomes.map((o) => o.kind),
      [
        "placed",
        "insufficient_stock",
        "replay",
        "placed",
        "product_not_found",
        "session_ended",
        "again",
        "placed",
        "session_ended",
        "session_ended",
        "insufficient_stock",
        "product_not_found",
      ],
    );
    const [first, second, replay, fourth, , , , eighth, , , last] = outcomes;
    assert.ok(first?.kind === "placed" && second?.kind === "insufficient_stock" && replay?.kind === "replay");
    assert.ok(fourth?.kind === "placed" && eighth?.kind === "placed" && last?.kind === "insufficient_stock");
    assert.equal(first.order.userId, alice.userId);
    assert.equal(first.order.quantity, 3);
    assert.equal(first.order.unitPrice, "5.00");
    assert.equal(first.order.totalPrice, "15.00");
    assert.equal(first.order.idempotencyKey, "k1");
    assert.equal(first.product.stock, 1, "the product as this order left it");
    assert.equal(second.stock, 1, "what was left when its turn came");
    assert.equal(replay.order.id, earlier.order.id);
    assert.equal(fourth.order.idempotencyKey, odd);
    assert.equal(fourth.product.stock, 0);
    // Only the first placed order of a product is sent its columns; the later ones still get them.
    assert.deepEqual({ ...fourth.product, stock: 1 }, first.product);
    assert.equal(fourth.product.price, "5.00");
    assert.equal(eighth.product.id, roomy);
    assert.equal(eighth.product.stock, 100 - 2 - 3);
    assert.ok(fourth.order.id > first.order.id, "ids follow arrival order");
    assert.equal(eighth.order.totalPrice, "3.75");
    assert.equal(last.stock, 0);

    // One UPDATE took each product's accepted total; one INSERT wrote the three placed orders.
    assert.equal(await stockOf(stack.pg.url, tight), 0);
    assert.equal(await stockOf(stack.pg.url, roomy), 100 - 2 - 3);
    assert.equal(await stockOf(stack.pg.url, archived), 100);
    const rows =
      await sql`SELECT user_id, product_id, quantity FROM orders WHERE product_id IN (${tight}, ${roomy}) ORDER BY id`;
    assert.equal(rows.length, 4);
  });

  test("a batch that sells out one product still places the others, and refuses nothing it could place", async () => {
    const buyer = sessionOf(await newUser(c(), "many"));
    const a = await newProduct(stack.pg.url, 5);
    const b = await newProduct(stack.pg.url, 7);
    const requests: OrderRequest[] = Array.from({ length: 40 }, (_, i) => ({
      session: buyer,
      productId: i % 2 === 0 ? b : a, // b first: the lock order is by id, not by arrival
      quantity: 1 + (i % 3),
      key: `many-${i}`,
    }));
    const outcomes = await placeBatch(requests);
    const sold = (productId: number) =>
      outcomes.reduce(
        (n, o, i) => (o.kind === "placed" && requests[i]?.productId === productId ? n + o.order.quantity : n),
        0,
      );
    assert.equal(sold(a) + (await stockOf(stack.pg.url, a)), 5);
    assert.equal(sold(b) + (await stockOf(stack.pg.url, b)), 7);
    // Every refusal was true when its turn came: no order that fitted was refused.
    for (const [i, o] of outcomes.entries()) {
      if (o.kind === "insufficient_stock") assert.ok(o.stock < (requests[i]?.quantity ?? 0));
      else assert.equal(o.kind, "placed");
    }
  });

  test("a batch sends the same two statements for 2 orders as for 60", async () => {
    const sent: string[] = [];
    const client = postgres(stack.pg.url, {
      max: 1,
      onnotice: () => {},
      debug: (_connection, query) => {
        sent.push(query);
      },
    });
    try {
      const db = drizzle({ client, schema });
      const buyer = sessionOf(await newUser(c(), "count"));
      const productIds = [await newProduct(stack.pg.url, 1000), await newProduct(stack.pg.url, 1000)];
      const statementsFor = async (size: number) => {
        sent.length = 0;
        const outcomes = await db.transaction(async (tx) => {
          const batch = new OrderBatch(tx);
          const answers = Array.from({ length: size }, (_, i) =>
            batch.join({ session: buyer, productId: productIds[i % 2] ?? 0, quantity: 1, key: `count-${size}-${i}` }),
          );
          await batch.flush();
          return Promise.all(answers);
        });
        assert.ok(outcomes.every((o) => o.kind === "placed"));
        // Besides BEGIN and COMMIT, and postgres.js's look-up of array types on a new connection.
        return sent.filter((q) => !/^\s*(begin|commit)\b/i.test(q) && !q.includes("pg_catalog.pg_type"));
      };
      const two = await statementsFor(2);
      const sixty = await statementsFor(60);
      assert.deepEqual(two, ORDER_BATCH_STATEMENTS);
      assert.deepEqual(sixty, two);
    } finally {
      await client.end();
    }
  });

  test("concurrent calls with one key form batches and place one order; the others replay it", async () => {
    const buyer = sessionOf(await newUser(c(), "twin"));
    const productId = await newProduct(stack.pg.url, 50);
    const answers = await Promise.all(
      Array.from({ length: 20 }, () =>
        c().orders.placeOrder({ session: buyer, productId, quantity: 2, idempotencyKey: "twin" }),
      ),
    );
    const ids = new Set(answers.map((a) => a.order?.id));
    assert.equal(ids.size, 1);
    assert.equal(answers.filter((a) => !a.replayed).length, 1);
    assert.equal(await stockOf(stack.pg.url, productId), 48);
    await rejectsWith(
      c().orders.placeOrder({ session: buyer, productId, quantity: 1, idempotencyKey: "twin" }),
      Code.FailedPrecondition,
      "idempotency_key_reused",
    );
  });
});
