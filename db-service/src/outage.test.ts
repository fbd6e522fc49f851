import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Code, createClient } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@merch/gen/grpc/health/v1/health_pb";
import { rejectsFields, rejectsWith } from "@merch/testkit";
import { type DbStack, newUser, sessionOf, startDbStack, TRANSPORTS } from "./test-support/index.ts";

let stack: DbStack;
before(async () => {
  stack = await startDbStack();
});
after(() => stack?.stop());

/** Resolves when the server's overall health reaches `want`, as reported by Watch. */
async function healthBecomes(want: number): Promise<void> {
  const health = createClient(Health, stack.transport("gRPC over h2c"));
  for await (const update of health.watch({ service: "" }, { signal: AbortSignal.timeout(20_000) })) {
    if (update.status === want) return;
  }
}

const longEmail = `${"a".repeat(250)}@example.com`;

test("while PostgreSQL is down: bad input is INVALID_ARGUMENT (it never reaches the database), good input UNAVAILABLE at once, health NOT_SERVING", async () => {
  const session = sessionOf(await newUser(stack.clients("gRPC over h2c"), "outage"));
  const health = createClient(Health, stack.transport("gRPC over h2c"));
  assert.equal((await health.check({ service: "" })).status, Status.SERVING);
  assert.equal((await health.check({ service: "merch.store.v1.OrderService" })).status, Status.SERVING);

  await stack.pg.stop();
  const stoppedAt = Date.now();
  await healthBecomes(Status.NOT_SERVING);
  assert.ok(Date.now() - stoppedAt < 2000, `health said NOT_SERVING after ${Date.now() - stoppedAt} ms`);
  assert.equal((await health.check({ service: "merch.store.v1.UserService" })).status, Status.NOT_SERVING);

  for (const transport of TRANSPORTS) {
    const c = stack.clients(transport);
    const opts = { timeoutMs: 15_000 };
    // A query would fail with UNAVAILABLE now; INVALID_ARGUMENT proves none was attempted.
    await rejectsFields(
      c.users.registerUser({ sid: "", username: "", email: "a@b.co", password: "long enough" }, opts),
      ["sid", "username"],
    );
    await rejectsFields(
      c.users.registerUser({ sid: "s1", username: "okname", email: longEmail, password: "long enough" }, opts),
      ["email"],
    );
    await rejectsFields(
      c.users.registerUser({ sid: "s1", username: "okname", email: "x@y.io", password: "short" }, opts),
      ["password"],
    );
    await rejectsFields(c.orders.placeOrder({ session, productId: 1, quantity: 0 }, opts), ["quantity"]);
    await rejectsFields(c.orders.placeOrder({ session, productId: 1, quantity: 4 }, opts), ["quantity"]);
    await rejectsFields(c.orders.placeOrder({ session, productId: -1, quantity: 1 }, opts), ["product_id"]);
    await rejectsFields(
      c.orders.placeOrder({ session, productId: 1, quantity: 1, idempotencyKey: "line\nbreak" }, opts),
      ["idempotency_key"],
    );
    await rejectsFields(c.products.getProduct({ id: -7 }, opts), ["id"]);
    await rejectsFields(c.orders.getOrder({ session, orderId: -1 }, opts), ["order_id"]);
    await rejectsFields(c.orders.cancelOrder({ session: { ...session, userId: 0 }, orderId: 1 }, opts), [
      "session.user_id",
    ]);
    await rejectsFields(c.orders.cancelOrder({ orderId: 1 }, opts), ["session"]);
    await rejectsFields(c.orders.listOrders({ session, pageToken: "%%%" }, opts), ["page_token"]);
    await rejectsFields(c.users.updateUser({ session }, opts), ["body"]);
    await rejectsFields(c.users.authenticateUser({ password: "whatever1" }, opts), ["login"]);

    // Valid calls fail fast and clearly instead of hanging or crashing.
    const started = Date.now();
    await rejectsWith(c.products.listProducts({}, opts), Code.Unavailable, "database_unavailable");
    await rejectsWith(
      c.orders.placeOrder({ session, productId: 1, quantity: 1 }, opts),
      Code.Unavailable,
      "database_unavailable",
    );
    await rejectsWith(c.orders.listOrders({ session }, opts), Code.Unavailable, "database_unavailable");
    assert.ok(Date.now() - started < 1000, `three refusals took ${Date.now() - started} ms`);
  }

  await stack.pg.start();
  const startedAgain = Date.now();
  await healthBecomes(Status.SERVING);
  assert.ok(Date.now() - startedAgain < 2000, `health said SERVING after ${Date.now() - startedAgain} ms`);
  const { products } = await stack.clients("Connect JSON over HTTP/1.1").products.listProducts({});
  assert.equal(products.length, 3);
});

test("while PostgreSQL is frozen (every process stopped), calls fail within a second and health says so; thawed, all is well within 2 s", async () => {
  const c = stack.clients("gRPC over h2c");
  const session = sessionOf(await newUser(c, "frozen"));
  const health = createClient(Health, stack.transport("gRPC over h2c"));
  stack.pg.freeze();
  try {
    const frozenAt = Date.now();
    await healthBecomes(Status.NOT_SERVING);
    const detected = Date.now() - frozenAt;
    assert.ok(detected < 2000, `NOT_SERVING after ${detected} ms`);
    const started = Date.now();
    await rejectsWith(
      c.orders.placeOrder({ session, productId: 2, quantity: 1 }, { timeoutMs: 5000 }),
      Code.Unavailable,
      "database_unavailable",
    );
    await rejectsWith(c.products.getProduct({ id: 1 }, { timeoutMs: 5000 }), Code.Unavailable, "database_unavailable");
    assert.ok(Date.now() - started < 1000, `refusals took ${Date.now() - started} ms`);
  } finally {
    stack.pg.thaw();
  }
  const thawedAt = Date.now();
  await healthBecomes(Status.SERVING);
  const { order } = await c.orders.placeOrder({ session, productId: 2, quantity: 1 });
  assert.ok(order);
  assert.ok(Date.now() - thawedAt < 2000, `an order succeeded ${Date.now() - thawedAt} ms after the thaw`);
  assert.equal((await health.check({ service: "" })).status, Status.SERVING);
});
