import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { type CallOptions, client, startTestStore, type TestStore } from "@merch/devstack";
import { ShopService } from "@merch/gen/merch/shop/v1/shop_pb";
import { REPO_ROOT, rejectsWith } from "@merch/testkit";
import { bearer, expectInvalidToken, PASSWORD, useTrustStore } from "./trust-store.ts";

// The trust boundary of the store, proved against the real processes (one of the trust-*.test.ts
// files; trust-login.test.ts has login throttling and the audit of failed logins). A token never
// names another account, even after npm run db:reset reuses ids.

const run = promisify(execFile);

useTrustStore();

describe("a token never names another account, even after npm run db:reset reuses ids", () => {
  let reset: TestStore;
  let resetApi: ReturnType<typeof client>;
  before(async () => {
    // A store of its own: the reset wipes every account.
    reset = await startTestStore();
    resetApi = client(reset.url);
  });
  after(() => reset?.stop());

  test("the old token is 401 on every route; the new account's data stays its own", async () => {
    const old = { sid: "Old1", username: "old_owner", email: "old@example.com", password: PASSWORD };
    const reg = await resetApi<{ id: number }>("POST", "/users/register", { body: old });
    assert.equal(reg.status, 201);
    const oldToken = (
      await resetApi<{ token: string }>("POST", "/users/login", {
        body: { username: old.username, password: PASSWORD },
      })
    ).body.token;
    const oldShop = createClient(ShopService, createConnectTransport({ baseUrl: reset.url, httpVersion: "1.1" }));
    assert.equal((await resetApi("GET", "/users/me", { token: oldToken })).status, 200);
    assert.equal((await resetApi("GET", "/orders", { token: oldToken })).status, 200);
    assert.ok((await oldShop.getMe({}, bearer(oldToken))).user);

    const { stdout } = await run(process.execPath, [join(REPO_ROOT, "scripts", "db-reset.ts"), "--yes"], {
      cwd: REPO_ROOT,
      env: { ...process.env, DATABASE_URL: reset.stack.databaseUrl },
      timeout: 60_000,
    });
    assert.match(stdout, /db:reset: done/);

    const fresh = { sid: "New1", username: "new_owner", email: "new@example.com", password: "another password" };
    const created = await resetApi<{ id: number }>("POST", "/users/register", { body: fresh });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.body.id, reg.body.id, "the reset database gave the new account the old id");
    const freshToken = (
      await resetApi<{ token: string }>("POST", "/users/login", { body: { sid: fresh.sid, password: fresh.password } })
    ).body.token;
    const order = await resetApi<{ id: number }>("POST", "/orders", {
      token: freshToken,
      body: { product_id: 1, quantity: 2 },
    });
    assert.equal(order.status, 201, order.text);

    for (const [method, path, opts] of [
      ["GET", "/users/me", {}],
      ["GET", "/orders", {}],
      ["GET", `/orders/${order.body.id}`, {}],
      ["POST", `/orders/${order.body.id}/cancel`, {}],
      ["POST", "/orders", { body: { product_id: 1, quantity: 1 } }],
      ["PATCH", "/users/me", { body: { email: "hijack@example.com" } }],
      ["POST", "/users/logout", {}],
      ["POST", "/users/me/deactivate", {}],
    ] as [string, string, CallOptions][]) {
      const res = await resetApi(method, path, { ...opts, token: oldToken });
      expectInvalidToken(res, `old token ${method} ${path}`);
      assert.ok(
        !res.text.includes(fresh.username) && !res.text.includes(fresh.email),
        `${path} leaked the new account`,
      );
    }
    await rejectsWith(oldShop.getMe({}, bearer(oldToken)), Code.Unauthenticated, "invalid_token");

    // The new account is untouched by all of that.
    const me = await resetApi<{ email: string; is_active: boolean }>("GET", "/users/me", { token: freshToken });
    assert.deepEqual([me.body.email, me.body.is_active], [fresh.email, true]);
    const orders = await resetApi<{ items: { id: number; status: string }[] }>("GET", "/orders", { token: freshToken });
    assert.deepEqual(
      orders.body.items.map((o) => [o.id, o.status]),
      [[order.body.id, "placed"]],
    );
  });
});
