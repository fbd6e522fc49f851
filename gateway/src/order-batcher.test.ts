import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Session } from "@merch/gen/merch/store/v1/session_pb";
import { reasonName, reasonOf, sendServiceCredential, violationsOf } from "@merch/kit";
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
import { OrderBatcher } from "./order-batcher.ts";

// The batcher in front of a real db-service (its own process) on a real PostgreSQL: every order
// gets the answer PlaceOrder would have given it, in fewer calls than orders.

const CREDENTIAL = "order-batcher-test-credential-0123456789abcdef";
let pg: TestPostgres;
let service: ServiceProcess;
let db: DbClients;
let sql: postgres.Sql;
/** PlaceOrder and PlaceOrders calls made through `db`, by method name. */
const calls = new Map<string, number>();
const count: Interceptor = (next) => (req) => {
  calls.set(req.method.name, (calls.get(req.method.name) ?? 0) + 1);
  return next(req);
};

before(async () => {
  pg = await startTestPostgres();
  service = runService(
    "db-service",
    await freePort(),
    { DATABASE_URL: pg.url, DB_CONNECT_TIMEOUT_S: "2", SERVICE_CREDENTIAL: CREDENTIAL },
    "capture",
  );
  await waitForOutput(service, /"database":"up"/, 60_000);
  db = dbClients(
    createConnectTransport({
      baseUrl: service.url,
      httpVersion: "2",
      useBinaryFormat: true,
      defaultTimeoutMs: 30_000,
      interceptors: [count, sendServiceCredential(CREDENTIAL)],
    }),
  );
  sql = postgres(pg.url, { max: 2, onnotice: () => {} });
});
after(async () => {
  await sql?.end();
  await service?.stop();
  await pg?.destroy();
});

let users = 0;
async function session(): Promise<Session> {
  users++;
  const sid = `1290${String(users).padStart(4, "0")}`;
  await db.users.registerUser({
    sid,
    username: `batch_${sid}`,
    email: `${sid}@example.com`,
    password: "batch password",
  });
  const res = await db.users.authenticateUser({ login: { case: "sid", value: sid }, password: "batch password" });
  return { userId: res.user?.id ?? 0, sessionId: res.sessionId } as Session;
}

async function product(stock: number): Promise<number> {
  const [row] = await sql<{ id: number }[]>`
    INSERT INTO products (name, category, price, stock)
    VALUES (${`Batch test ${process.pid}-${stock}-${Date.now()}`}, 'Test', 2, ${stock}) RETURNING id`;
  return row?.id ?? 0;
}

const nameOf = (err: ConnectError) => {
  const reason = reasonOf(err);
  return reason === undefined ? `code ${err.code}` : reasonName(reason);
};

const outcome = (r: PromiseSettledResult<unknown>) =>
  r.status === "fulfilled" ? "placed" : r.reason instanceof ConnectError ? nameOf(r.reason) : String(r.reason);

test("40 orders at once for a stock of 30: 30 placed, 10 insufficient_stock, in fewer calls than orders", async () => {
  const me = await session();
  const productId = await product(30);
  const batcher = new OrderBatcher(db.orders, { timeoutMs: 30_000 });
  calls.clear();
  const results = await Promise.allSettled(
    Array.from({ length: 40 }, (_, i) =>
      batcher.place({ session: me, productId, quantity: 1, idempotencyKey: `forty-${i}` }),
    ),
  );
  const outcomes = results.map(outcome);
  assert.equal(outcomes.filter((o) => o === "placed").length, 30, outcomes.join(","));
  assert.equal(outcomes.filter((o) => o === "insufficient_stock").length, 10, outcomes.join(","));
  // Arrival order: the first 30 asked are the ones placed.
  assert.deepEqual(outcomes.slice(0, 30), Array(30).fill("placed"));
  assert.equal(calls.get("PlaceOrder") ?? 0, 0);
  const batches = calls.get("PlaceOrders") ?? 0;
  assert.ok(batches >= 1 && batches < 40, `40 orders in ${batches} calls`);
  const [row] = await sql<{ stock: number }[]>`SELECT stock FROM products WHERE id = ${productId}`;
  assert.equal(row?.stock, 0);
});

test("every placed order answers with its product as the batch left it, though db-service sends each once", async () => {
  const me = await session();
  const a = await product(10);
  const b = await product(10);
  const batcher = new OrderBatcher(db.orders, { timeoutMs: 30_000 });
  calls.clear();
  const answers = await Promise.all(
    [a, b, a, b, a].map((productId, i) =>
      batcher.place({ session: me, productId, quantity: 2, idempotencyKey: `p-${i}` }),
    ),
  );
  assert.equal(calls.get("PlaceOrders"), 1, "the five went in one call");
  for (const answer of answers) {
    assert.equal(answer.product?.id, answer.order?.productId);
    // a: 10 − 3 × 2, b: 10 − 2 × 2: what the last order of each left, in every answer of it.
    assert.equal(answer.product?.stock, answer.order?.productId === a ? 4 : 6);
  }
  // A repeat takes nothing and, as PlaceOrder's replay, answers no product.
  const replay = await batcher.place({ session: me, productId: a, quantity: 2, idempotencyKey: "p-0" });
  assert.equal(replay.replayed, true);
  assert.equal(replay.product, undefined);
});

test("an invalid order in a batch is refused alone, naming its field; the others are placed", async () => {
  const me = await session();
  const productId = await product(10);
  const batcher = new OrderBatcher(db.orders, { timeoutMs: 30_000 });
  const results = await Promise.allSettled([
    batcher.place({ session: me, productId, quantity: 1 }),
    batcher.place({ session: me, productId, quantity: 0 }),
    batcher.place({ session: me, productId, quantity: 2 }),
  ]);
  assert.deepEqual(results.map(outcome), ["placed", "validation_failed", "placed"]);
  const refused = results[1];
  assert.ok(refused?.status === "rejected" && refused.reason instanceof ConnectError);
  assert.deepEqual(
    violationsOf(refused.reason).map((v) => v.field),
    ["quantity"],
  );
  const [row] = await sql<{ stock: number }[]>`SELECT stock FROM products WHERE id = ${productId}`;
  assert.equal(row?.stock, 7);
});

test("an order whose time runs out while it waits for a call is refused as service_unavailable and never placed", async () => {
  const me = await session();
  const productId = await product(10);
  // One call at a time; the first waits on the product's row lock, held here.
  const batcher = new OrderBatcher(db.orders, { timeoutMs: 1500, maxInFlight: 1 });
  const held = Promise.withResolvers<void>();
  const locked = Promise.withResolvers<void>();
  const holder = sql.begin(async (tx) => {
    await tx`SELECT id FROM products WHERE id = ${productId} FOR UPDATE`;
    locked.resolve();
    await held.promise;
  });
  await locked.promise;
  const first = batcher.place({ session: me, productId, quantity: 1, idempotencyKey: "first" });
  // The next turn of the event loop: the first has gone out alone, this one waits for its slot.
  await new Promise((r) => setImmediate(r));
  const second = batcher.place({ session: me, productId, quantity: 1, idempotencyKey: "second" });
  const [a, b] = await Promise.allSettled([first, second]);
  held.resolve();
  await holder;
  // The first was sent: its deadline passed in db-service, which did not place it.
  assert.equal(a?.status, "rejected");
  assert.equal(b?.status, "rejected");
  assert.ok(b.status === "rejected" && b.reason instanceof ConnectError);
  assert.equal(b.reason.code, Code.Unavailable);
  assert.equal(nameOf(b.reason), "service_unavailable");
  const [placed] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM orders WHERE product_id = ${productId}`;
  assert.equal(placed?.n, 0);
});
