import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import type { CallOptions } from "@merch/devstack";
import { rejectsWith } from "@merch/testkit";
import {
  type Account,
  api,
  bearer,
  expectInvalidToken,
  login,
  newAccount,
  PASSWORD,
  placeOrder,
  shop,
  snapshot,
  sql,
  useTrustStore,
} from "./trust-store.ts";

// The trust boundary of the store, proved against the real processes (one of the trust-*.test.ts
// files; trust-login.test.ts has login throttling and the audit of failed logins). A token stops at
// once when its session ends, even right after the gateway verified (and cached) it.

useTrustStore();

describe("revocation: a token used (and cached) just before stops at once", () => {
  /** Uses the token on REST and on ShopService, so that the gateway has verified and cached it. */
  async function use(token: string) {
    assert.equal((await api("GET", "/users/me", { token })).status, 200);
    assert.ok((await shop.getMe({}, bearer(token))).user);
  }

  /** Every route that takes a token refuses it, none changes anything, and ShopService agrees. */
  async function refusedEverywhere(account: Account, token: string, orderId: number) {
    const was = await snapshot(account.id);
    const calls: [string, string, CallOptions][] = [
      ["GET", "/users/me", {}],
      ["PATCH", "/users/me", { body: { email: `changed-${account.sid}@example.com` } }],
      ["POST", "/users/logout", {}],
      ["GET", "/orders", {}],
      ["POST", "/orders", { body: { product_id: 1, quantity: 1 } }],
      ["GET", `/orders/${orderId}`, {}],
      ["POST", `/orders/${orderId}/cancel`, {}],
      ["GET", "/orders/999999", {}],
      ["POST", "/orders/999999/cancel", {}],
      ["POST", "/users/me/deactivate", {}],
    ];
    for (const [method, path, opts] of calls) {
      expectInvalidToken(await api(method, path, { ...opts, token }), `${method} ${path}`);
    }
    const refused = (call: Promise<unknown>) => rejectsWith(call, Code.Unauthenticated, "invalid_token");
    await refused(shop.getMe({}, bearer(token)));
    await refused(shop.listOrders({}, bearer(token)));
    await refused(shop.getOrder({ id: orderId }, bearer(token)));
    await refused(shop.placeOrder({ productId: 1, quantity: 1 }, bearer(token)));
    await refused(shop.updateMe({ email: `shop-${account.sid}@example.com` }, bearer(token)));
    await refused(shop.logout({}, bearer(token)));
    assert.deepEqual(await snapshot(account.id), was, "a refused token changed something");
  }

  test("logout over REST: the token stops on REST and on ShopService; the account's other token goes on", async () => {
    const a = await newAccount();
    const other = await login(a.username);
    const orderId = await placeOrder(a.token);
    await use(a.token);
    await use(other);
    assert.equal((await api("POST", "/users/logout", { token: a.token })).status, 204);
    await refusedEverywhere(a, a.token, orderId);
    await use(other);
  });

  test("logout over ShopService: the token stops on REST at once", async () => {
    const a = await newAccount();
    const orderId = await placeOrder(a.token);
    await use(a.token);
    await shop.logout({}, bearer(a.token));
    await refusedEverywhere(a, a.token, orderId);
  });

  test("a password change ends every session of the account, other logins' too; a wrong current_password ends none", async () => {
    const a = await newAccount();
    const second = await login(a.username);
    const third = (await shop.login({ login: { case: "sid", value: a.sid }, password: PASSWORD })).token;
    const orderId = await placeOrder(a.token);
    for (const token of [a.token, second, third]) await use(token);

    const wrong = await api("PATCH", "/users/me", {
      token: second,
      body: { password: "a brand new password", current_password: "not the password" },
    });
    assert.equal(wrong.status, 403, wrong.text);
    for (const token of [a.token, second, third]) await use(token);

    const changed = await api("PATCH", "/users/me", {
      token: a.token,
      body: { password: "a brand new password", current_password: PASSWORD },
    });
    assert.equal(changed.status, 200, changed.text);
    for (const token of [a.token, second, third]) await refusedEverywhere(a, token, orderId);
    assert.equal(
      (await api("POST", "/users/login", { body: { username: a.username, password: PASSWORD } })).status,
      401,
    );
    await use(await login(a.username, "a brand new password"));
  });

  test("deactivation ends every session; the row stays", async () => {
    const a = await newAccount();
    const second = await login(a.username);
    const orderId = await placeOrder(a.token);
    await use(a.token);
    await use(second);
    assert.equal((await api("POST", "/users/me/deactivate", { token: a.token })).status, 204);
    for (const token of [a.token, second]) await refusedEverywhere(a, token, orderId);
    const [row] = await sql`SELECT is_active FROM users WHERE id = ${a.id}`;
    assert.equal(row?.is_active, false);
  });
});
