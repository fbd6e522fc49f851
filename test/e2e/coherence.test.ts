import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { newProduct, stockOf } from "@merch/db-service/test-support";
import { startTestStore, TEST_JWT_SECRET, type TestStore } from "@merch/devstack";
import { freePort, runService, type ServiceProcess } from "@merch/testkit";
import { waitForReady } from "./trust-support.ts";

// Product pages across gateway replicas (issue 11.8): two gateway processes on one db-service,
// both with a product cache whose TTL (60 s) is far longer than this test, so a page can only
// change through db-service's WatchProducts stream or the gateway's own write. A client sees its
// own order's stock on its very next read; the other gateway's page follows. The lag between
// the order's answer and the other gateway's page is measured and reported, not asserted (a busy
// machine stretches it); that it follows at all within the test's deadline proves the stream.

const TTL = "60000";
let store: TestStore;
let gatewayB: ServiceProcess | undefined;
let urlB: string;
let token: string;

before(async () => {
  store = await startTestStore({ serviceEnv: { gateway: { PRODUCT_CACHE_TTL_MS: TTL } } });
  gatewayB = runService(
    "gateway",
    await freePort(),
    {
      DB_SERVICE_URL: store.stack.services["db-service"].url,
      LOG_SERVICE_URL: store.stack.services["log-service"].url,
      JWT_SECRET: TEST_JWT_SECRET,
      SERVICE_CREDENTIAL: store.stack.serviceCredential,
      PRODUCT_CACHE_TTL_MS: TTL,
      SHUTDOWN_GRACE_MS: "1000",
    },
    "capture",
  );
  urlB = gatewayB.url;
  await waitForReady(urlB, gatewayB);
  const account = { sid: "CO1", username: "coherent", email: "coherent@example.com", password: "same page please" };
  assert.equal((await post(store.url, "/users/register", account)).status, 201);
  const login = await post(store.url, "/users/login", { username: account.username, password: account.password });
  token = ((await login.json()) as { token: string }).token;
});
after(async () => {
  await gatewayB?.stop();
  await store?.stop();
});

function post(base: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
}

async function stockOn(base: string, id: number): Promise<number> {
  const res = await fetch(`${base}/products/${id}`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(res.status, 200);
  return ((await res.json()) as { stock: number }).stock;
}

test("an order through one gateway shows at once there, and on the other gateway through the change stream", async (t) => {
  const id = await newProduct(store.stack.databaseUrl, 100);
  // Both gateways have read the product once, so both have it cached.
  assert.equal(await stockOn(store.url, id), 100);
  assert.equal(await stockOn(urlB, id), 100);

  const lags: number[] = [];
  for (let n = 1; n <= 20; n++) {
    // Alternate: orders through A, then through B, so each is the "other" replica in turn.
    const [writer, reader] = n % 2 === 1 ? [store.url, urlB] : [urlB, store.url];
    const res = await post(writer, "/orders", { product_id: id, quantity: 1 }, { authorization: `Bearer ${token}` });
    assert.equal(res.status, 201, await res.text());
    const answeredAt = performance.now();
    const expected = 100 - n;
    assert.equal(await stockOn(writer, id), expected, `order ${n}: the writer's next read is behind`);
    const deadline = Date.now() + 5000;
    let seen = await stockOn(reader, id);
    while (seen !== expected) {
      assert.ok(Date.now() < deadline, `order ${n}: the other gateway still shows ${seen}, not ${expected}, after 5 s`);
      await new Promise((r) => setTimeout(r, 2));
      seen = await stockOn(reader, id);
    }
    lags.push(performance.now() - answeredAt);
  }
  assert.equal(await stockOf(store.stack.databaseUrl, id), 80);
  lags.sort((a, b) => a - b);
  t.diagnostic(
    `the other gateway's page followed an order after: median ${lags[10]?.toFixed(1)} ms, max ${lags[19]?.toFixed(1)} ms (20 orders)`,
  );
});

test("a change made outside any gateway (an operator's SQL) reaches both gateways' pages", async () => {
  const id = await newProduct(store.stack.databaseUrl, 7);
  assert.equal(await stockOn(store.url, id), 7);
  assert.equal(await stockOn(urlB, id), 7);
  const postgres = (await import("postgres")).default;
  const sql = postgres(store.stack.databaseUrl, { max: 1, onnotice: () => {} });
  try {
    await sql`UPDATE products SET stock = 42 WHERE id = ${id}`;
  } finally {
    await sql.end();
  }
  for (const base of [store.url, urlB]) {
    const deadline = Date.now() + 5000;
    while ((await stockOn(base, id)) !== 42) {
      assert.ok(Date.now() < deadline, `${base} still shows the old stock after 5 s`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
});
