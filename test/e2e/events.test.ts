import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { client, startTestStore, type TestStore } from "@merch/devstack";
import { type ChannelRecord, followLogChannel } from "@merch/testkit";

// What the gateway tells log-service arrives on Kafka's log-channel: every request, every key
// operation, and never a secret. A log-service outage costs no request and no event.

process.env.KAFKAJS_NO_PARTITIONER_WARNING = "1";

let store: TestStore;
let api: ReturnType<typeof client>;
let channel: Awaited<ReturnType<typeof followLogChannel>>;
before(async () => {
  store = await startTestStore({ kafka: true });
  api = client(store.url);
  channel = await followLogChannel(store.kafka?.brokers ?? "");
});
after(async () => {
  await channel?.stop();
  await store?.stop();
});

const PASSWORD = "a very secret passphrase";

test("register, logins, an auth failure, an order, its cancellation, an update and a deactivation all arrive", async () => {
  const body = { sid: "E1", username: "eve", email: "eve@example.com", password: PASSWORD };
  const reg = await api<{ id: number }>("POST", "/users/register", { body });
  const userId = reg.body.id;
  assert.equal(
    (await api("POST", "/users/login", { body: { username: "eve", password: "wrong guess 1" } })).status,
    401,
  );
  const login = await api<{ token: string }>("POST", "/users/login", { body: { username: "eve", password: PASSWORD } });
  const token = login.body.token;
  assert.equal((await api("GET", "/users/me", { token: `${token}tampered` })).status, 401);
  const order = await api<{ id: number }>("POST", "/orders", { token, body: { product_id: 3, quantity: 2 } });
  assert.equal(order.status, 201);
  assert.equal((await api("POST", `/orders/${order.body.id}/cancel`, { token })).status, 200);
  // Cancelling again answers the same and changes nothing: no second event (checked below).
  assert.equal((await api("POST", `/orders/${order.body.id}/cancel`, { token })).status, 200);
  assert.equal((await api("PATCH", "/users/me", { token, body: { email: "eve2@example.com" } })).status, 200);
  assert.equal((await api("POST", "/users/me/deactivate", { token })).status, 204);

  const mine = (event: string) => (r: ChannelRecord) => r.record.event === event && r.record.user_id === userId;
  const registered = await channel.waitFor(mine("user.registered"), "user.registered");
  const failed = await channel.waitFor((r) => r.record.event === "user.login_failed", "user.login_failed");
  assert.equal(failed.record.attributes.reason, "invalid_credentials");
  await channel.waitFor(mine("user.login_succeeded"), "user.login_succeeded");
  const authFailed = await channel.waitFor((r) => r.record.event === "auth.failed", "auth.failed");
  assert.equal(authFailed.record.level, "warn");
  const placed = await channel.waitFor(mine("order.placed"), "order.placed");
  assert.equal(placed.record.attributes.order_id, String(order.body.id));
  assert.equal(placed.record.attributes.total_price, "19.98");
  await channel.waitFor(mine("order.cancelled"), "order.cancelled");
  const updated = await channel.waitFor(mine("user.updated"), "user.updated");
  assert.equal(updated.record.attributes.fields, "email");
  await channel.waitFor(mine("user.deactivated"), "user.deactivated");
  // The user's events share a partition, so every event sent before the deactivation is here now.
  const cancellations = channel.records.filter(
    (r) => r.record.event === "order.cancelled" && r.record.attributes.order_id === String(order.body.id),
  );
  assert.equal(cancellations.length, 1, "one cancellation, one event");

  // One request event per answered request, with its route, status, duration and user.
  const request = await channel.waitFor(
    (r) => r.record.event === "http.request" && r.record.http?.path === `/orders/${order.body.id}/cancel`,
    "the cancel request event",
  );
  assert.deepEqual(
    { ...request.record.http, duration_ms: typeof request.record.http?.duration_ms },
    { method: "POST", path: `/orders/${order.body.id}/cancel`, status: 200, duration_ms: "number" },
  );
  assert.equal(request.record.user_id, userId);
  assert.equal(request.record.service, "gateway");
  assert.match(request.record.request_id ?? "", /.+/);

  // One user's events share a key, so they stay in order on one partition.
  assert.equal(registered.key, String(userId));
  assert.equal(placed.key, String(userId));

  for (const r of channel.records) {
    assert.ok(!r.raw.includes(PASSWORD), `a password in ${r.raw}`);
    assert.ok(!r.raw.includes(token), `a token in ${r.raw}`);
    assert.ok(!/Bearer |eyJhbGci|\$argon2/.test(r.raw), `a credential in ${r.raw}`);
  }
  assert.equal(new Set(channel.records.map((r) => r.record.id)).size, channel.records.length);
});

test("while log-service is down, requests still succeed; their events arrive once it is back", async () => {
  const log = store.stack.services["log-service"];
  await log.stop();
  const marker = `/products/2?outage=${Date.now()}`;
  const started = Date.now();
  for (let i = 0; i < 20; i++) {
    const res = await api("GET", marker);
    assert.equal(res.status, 200);
  }
  const body = { sid: "O1", username: "outage_user", email: "outage@example.com", password: PASSWORD };
  const reg = await api<{ id: number }>("POST", "/users/register", { body });
  assert.equal(reg.status, 201);
  const health = await api<{ log_events: { queued: number; dropped: number } }>("GET", "/healthz");
  assert.ok(health.body.log_events.queued > 0);
  assert.equal(health.body.log_events.dropped, 0);
  log.start();
  await channel.waitFor(
    (r) => r.record.event === "user.registered" && r.record.user_id === reg.body.id,
    "the registration made during the outage",
  );
  const deadline = Date.now() + 30_000;
  let outageRequests = 0;
  while (outageRequests < 20 && Date.now() < deadline) {
    outageRequests = channel.records.filter(
      (r) =>
        r.record.event === "http.request" &&
        r.record.http?.path === "/products/2" &&
        Date.parse(r.record.time) >= started - 1000,
    ).length;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(outageRequests >= 20, `only ${outageRequests} of 20 request events arrived`);
});
