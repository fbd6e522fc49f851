import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import type { ApiResponse } from "@merch/devstack";
import {
  type Account,
  api,
  bearer,
  newAccount,
  PASSWORD,
  placeOrder,
  shop,
  sql,
  store,
  useTrustStore,
} from "./trust-store.ts";
import { logLines, parseRaw, rawHttp } from "./trust-support.ts";

// The trust boundary of the store, proved against the real processes (one of the trust-*.test.ts
// files; trust-login.test.ts has login throttling and the audit of failed logins). No control
// character in any string field of any route gets further than a 400 (or a failed login): never a
// 5xx, nothing written.

useTrustStore();

describe("control characters in any string field of any route: a 400 or a failed login, never a 5xx, nothing written", () => {
  const CONTROL = ["\u0000", "\u0001", "\t", "\n", "\u001b", "\u007f"];
  const show = (c: string) => `U+${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
  let a: Account;
  let orderId: number;
  let initial: unknown;

  /** Counts of every table and the account's row: what a refused request must leave alone. */
  const state = async () => {
    const [row] = await sql`SELECT
      (SELECT row_to_json(u) FROM users u WHERE u.id = ${a.id}) AS account,
      (SELECT count(*)::int FROM users) AS users,
      (SELECT count(*)::int FROM sessions) AS sessions,
      (SELECT coalesce(json_agg(o ORDER BY o.id), '[]') FROM orders o) AS orders,
      (SELECT sum(stock)::int FROM products) AS stock`;
    return row;
  };

  function refused(res: ApiResponse, what: string, statuses = [400]) {
    assert.ok(statuses.includes(res.status), `${what}: ${res.status} ${res.text}`);
    assert.equal(res.headers.get("content-type")?.split(";")[0], "application/problem+json", what);
  }

  before(async () => {
    a = await newAccount("ctl");
    orderId = await placeOrder(a.token);
    initial = await state();
  });

  test("POST /users/register, every field", async () => {
    for (const c of CONTROL) {
      for (const field of ["sid", "username", "email", "password"] as const) {
        const body = { sid: "Ctl1", username: "ctl_user", email: "ctl@example.com", password: "fine password" };
        body[field] =
          field === "email" ? `ctl${c}x@example.com` : `${body[field].slice(0, 2)}${c}${body[field].slice(2)}`;
        const res = await api<{ errors?: { field: string }[] }>("POST", "/users/register", { body });
        refused(res, `register ${field} ${show(c)}`);
        assert.ok(
          res.body.errors?.some((e) => e.field === field),
          `${field} named: ${res.text}`,
        );
      }
      refused(
        await api("POST", "/users/register", {
          body: {
            sid: "Ctl1",
            username: "ctl_user",
            email: "ctl@example.com",
            password: "fine password",
            [`x${c}`]: 1,
          },
        }),
        `register unknown field ${show(c)}`,
      );
    }
  });

  test("POST /users/login: username, sid and password", async () => {
    for (const c of CONTROL) {
      for (const body of [
        { username: `${a.username}${c}`, password: PASSWORD },
        { username: `${c}`, password: PASSWORD },
        { sid: `${a.sid.slice(0, 3)}${c}${a.sid.slice(3)}`, password: PASSWORD },
        { username: a.username, password: `${PASSWORD}${c}` },
        { sid: a.sid, password: `${c}${PASSWORD}` },
      ]) {
        refused(await api("POST", "/users/login", { body }), `login ${JSON.stringify(body)}`, [400, 401]);
      }
    }
    // Not one of those reached db-service: no failed login was counted against the account, and
    // none is still being checked. (Its own correct login left a window with nothing in it.)
    const counted = await sql`SELECT key FROM throttle
      WHERE (key = ${`login:account:${a.id}`} OR key LIKE ${`login:account:${a.id}:%`}) AND (hits > 0 OR pending > 0)`;
    assert.deepEqual([...counted], []);
  });

  test("PATCH /users/me: username, email, password and current_password", async () => {
    for (const c of CONTROL) {
      for (const body of [
        { username: `ctl${c}name` },
        { email: `ctl${c}@example.com` },
        { password: `new${c}password`, current_password: PASSWORD },
        { password: "a new password", current_password: `${PASSWORD}${c}` },
      ]) {
        refused(await api("PATCH", "/users/me", { token: a.token, body }), `PATCH ${JSON.stringify(body)}`);
      }
    }
  });

  test("Idempotency-Key, Authorization and the request line: control characters a client can and cannot send", async () => {
    // A tab is the one control character fetch lets into a header value (trimmed at the ends).
    const res = await api<{ errors?: { field: string }[] }>("POST", "/orders", {
      token: a.token,
      body: { product_id: 1, quantity: 1 },
      headers: { "idempotency-key": "key\twith-tab" },
    });
    refused(res, "Idempotency-Key with a tab");
    assert.ok(
      res.body.errors?.some((e) => e.field === "Idempotency-Key"),
      res.text,
    );
    refused(
      await api("GET", "/users/me", { headers: { authorization: `Bearer ${a.token}\tx` } }),
      "Authorization with a tab",
      [401],
    );
    // The rest only a raw socket sends: Node's parser answers them as problem details.
    const body = JSON.stringify({ product_id: 1, quantity: 1 });
    for (const c of ["\u0000", "\u0001", "\u001b", "\u007f"]) {
      for (const [what, request] of [
        [
          "Idempotency-Key",
          `POST /orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${a.token}\r\nIdempotency-Key: k${c}k\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
        ],
        [
          "Authorization",
          `GET /users/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${a.token}${c}\r\nConnection: close\r\n\r\n`,
        ],
        [
          "the path",
          `GET /orders/1${c} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${a.token}\r\nConnection: close\r\n\r\n`,
        ],
      ] as const) {
        const answer = parseRaw(await rawHttp(port(store.url), request));
        assert.ok([400, 401].includes(answer.status), `${what} ${show(c)}: ${answer.status} ${answer.body}`);
        assert.equal(answer.headers.get("content-type")?.split(";")[0], "application/problem+json", what);
      }
    }
  });

  test("query cursor and limit, and path ids", async () => {
    for (const c of CONTROL) {
      const e = encodeURIComponent(c);
      for (const path of [`/orders?cursor=${e}`, `/orders?cursor=abc${e}def`, `/orders?limit=1${e}`]) {
        refused(await api("GET", path, { token: a.token }), `GET ${path}`);
      }
      for (const [method, path] of [
        ["GET", `/orders/${orderId}${e}`],
        ["GET", `/orders/${e}`],
        ["POST", `/orders/${orderId}${e}/cancel`],
        ["GET", `/products/1${e}`],
      ] as const) {
        refused(await api(method, path, { token: a.token }), `${method} ${path}`);
      }
    }
    // An id is its digits: nothing JavaScript's Number() would also take for one.
    for (const id of [" 1", "1 ", "0x1", "1e0", "+1", "1.0"]) {
      const e = encodeURIComponent(id);
      refused(await api("GET", `/products/${e}`), `GET /products/${e}`);
      refused(await api("GET", `/orders/${e}`, { token: a.token }), `GET /orders/${e}`);
      refused(await api("GET", `/orders?limit=${e}`, { token: a.token }), `GET /orders?limit=${e}`);
    }
  });

  test("ShopService, the REST twin: invalid_argument, or a failed login", async () => {
    const auth = bearer(a.token);
    const isRefusal = async (call: Promise<unknown>, what: string, codes = [Code.InvalidArgument]) => {
      try {
        await call;
      } catch (err) {
        const code = (err as { code?: Code }).code;
        assert.ok(code !== undefined && codes.includes(code), `${what}: ${String(err)}`);
        return;
      }
      assert.fail(`${what} succeeded`);
    };
    for (const [i, c] of CONTROL.entries()) {
      const good = { sid: "Ctl2", username: "ctl_user2", email: "ctl2@example.com", password: "fine password" };
      for (const field of ["sid", "username", "email", "password"] as const) {
        await isRefusal(shop.register({ ...good, [field]: `${good[field]}${c}` }), `Register ${field} ${show(c)}`);
      }
      // A name nobody can have is a failed login; each its own name, so that no account is locked.
      const login = Code.Unauthenticated;
      await isRefusal(
        shop.login({ login: { case: "username", value: `${a.username}${c}` }, password: PASSWORD }),
        "Login username",
        [Code.InvalidArgument, login],
      );
      await isRefusal(shop.login({ login: { case: "sid", value: `${c}${a.sid}` }, password: PASSWORD }), "Login sid", [
        Code.InvalidArgument,
        login,
      ]);
      await isRefusal(
        shop.login({ login: { case: "username", value: `ghost_${process.pid}_${i}` }, password: `pw${c}` }),
        "Login password",
        [Code.InvalidArgument, login],
      );
      for (const change of [
        { username: `ctl${c}x` },
        { email: `a${c}@example.com` },
        { password: `new pass${c}word`, currentPassword: PASSWORD },
      ]) {
        await isRefusal(shop.updateMe(change, auth), `UpdateMe ${JSON.stringify(change)}`);
      }
      await isRefusal(
        shop.updateMe({ password: "a new password", currentPassword: `${PASSWORD}${c}` }, auth),
        "UpdateMe current_password",
        [Code.InvalidArgument, Code.PermissionDenied],
      );
      await isRefusal(shop.placeOrder({ productId: 1, quantity: 1, idempotencyKey: `k${c}` }, auth), "PlaceOrder key");
      await isRefusal(shop.listOrders({ pageToken: `t${c}` }, auth), "ListOrders page_token");
    }
  });

  test("after all of them: nothing was written, and no service logged a server fault", async () => {
    assert.deepEqual(await state(), initial);
    // The account still works with its first token and password.
    assert.equal((await api("GET", "/users/me", { token: a.token })).status, 200);
    for (const name of ["gateway", "db-service"] as const) {
      const faults = logLines(store.stack.services[name]).filter((l) => Number(l.level) >= 50);
      assert.deepEqual(faults, [], `${name} logged errors`);
    }
  });
});

function port(url: string): number {
  return Number(new URL(url).port);
}
