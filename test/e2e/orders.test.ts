import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { client, startTestStore, type TestStore } from "@merch/devstack";

// The order path under load, through REST only: no oversell, stock back once, idempotent retries.

interface Order {
  id: number;
  status: string;
}

let store: TestStore;
let api: ReturnType<typeof client>;
before(async () => {
  // Stock is read through REST here, so product pages must not be cached. The counts below are exact
  // only if no order is shed for time, so on a busy machine every call may wait for its turn.
  store = await startTestStore({ serviceEnv: { gateway: { PRODUCT_CACHE_TTL_MS: "0", RPC_TIMEOUT_MS: "60000" } } });
  api = client(store.url);
});
after(() => store?.stop());

async function buyers(count: number, prefix: string): Promise<string[]> {
  return Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const name = `${prefix}${i}`;
      const body = { sid: name, username: `buyer_${name}`, email: `${name}@example.com`, password: "buyer password" };
      assert.equal((await api("POST", "/users/register", { body })).status, 201);
      const login = await api<{ token: string }>("POST", "/users/login", {
        body: { sid: body.sid, password: body.password },
      });
      return login.body.token;
    }),
  );
}

/** How many PlaceOrder and PlaceOrders calls db-service has answered, from its metrics. */
async function orderCalls(): Promise<{ PlaceOrder: number; PlaceOrders: number }> {
  const text = await (await fetch(store.stack.metricsUrls["db-service"])).text();
  const count = (method: string) =>
    [
      ...text.matchAll(
        new RegExp(`^rpc_server_duration_seconds_count\\{[^}]*rpc_method="${method}"[^}]*\\} (\\d+)`, "gm"),
      ),
    ]
      .map((m) => Number(m[1]))
      .reduce((a, b) => a + b, 0);
  return { PlaceOrder: count("PlaceOrder"), PlaceOrders: count("PlaceOrders") };
}

async function stock(productId: number): Promise<number> {
  return (await api<{ stock: number }>("GET", `/products/${productId}`)).body.stock;
}

test("300 concurrent REST orders of 3 against a stock of 500: 166 placed, 134 refused, stock 2, and back to 500 on cancel", async () => {
  const tokens = await buyers(10, "rush");
  assert.equal(await stock(1), 500);
  const results = await Promise.all(
    Array.from({ length: 300 }, (_, i) =>
      api<Order & { code?: string }>("POST", "/orders", {
        token: tokens[i % tokens.length],
        body: { product_id: 1, quantity: 3 },
      }).then((res) => ({ res, token: tokens[i % tokens.length] ?? "" })),
    ),
  );
  const placed = results.filter((r) => r.res.status === 201);
  const refused = results.filter((r) => r.res.status !== 201);
  assert.equal(placed.length, 166);
  assert.equal(refused.length, 134);
  for (const { res } of refused) {
    assert.equal(res.status, 409);
    assert.equal(res.body.code, "insufficient_stock");
  }
  assert.equal(await stock(1), 2);
  // The gateway carried them to db-service several per call: fewer PlaceOrders calls than orders,
  // and no single PlaceOrder.
  const calls = await orderCalls();
  assert.equal(calls.PlaceOrder, 0, "the gateway sends no order alone");
  assert.ok(calls.PlaceOrders > 0 && calls.PlaceOrders < 300, `300 orders in ${calls.PlaceOrders} PlaceOrders calls`);

  // Cancel each order twice at once: the stock comes back exactly once per order.
  const cancels = await Promise.all(
    placed.flatMap(({ res, token }) => [
      api<Order>("POST", `/orders/${res.body.id}/cancel`, { token }),
      api<Order>("POST", `/orders/${res.body.id}/cancel`, { token }),
    ]),
  );
  assert.ok(cancels.every((c) => c.status === 200 && c.body.status === "cancelled"));
  assert.equal(await stock(1), 500);
});

test("concurrent retries with one Idempotency-Key place one order and charge the stock once", async () => {
  const [token] = await buyers(1, "retry");
  const before = await stock(2);
  const results = await Promise.all(
    Array.from({ length: 25 }, () =>
      api<Order>("POST", "/orders", {
        token,
        headers: { "idempotency-key": "pay-button-3c9e" },
        body: { product_id: 2, quantity: 2 },
      }),
    ),
  );
  assert.ok(results.every((r) => r.status === 201));
  assert.equal(new Set(results.map((r) => r.body.id)).size, 1);
  assert.equal(results.filter((r) => r.headers.get("idempotent-replayed") === "true").length, 24);
  assert.equal(await stock(2), before - 2);
});
