import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { putProduct } from "@merch/db-service/test-support";
import { type ApiResponse, client, documentedStatuses, seen, startTestStore, type TestStore } from "@merch/devstack";
import { SPEC_PATH } from "@merch/gateway";
import postgres from "postgres";

// Every row of the contract's route table, driven over HTTP against the three real services.

interface User {
  id: number;
  sid: string;
  username: string;
  email: string;
  is_active: boolean;
  created_at: string;
}
interface Order {
  id: number;
  user_id: number;
  product_id: number;
  quantity: number;
  unit_price: string;
  total_price: string;
  status: string;
  created_at: string;
  cancelled_at: string | null;
}
interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  errors?: { field: string; message: string }[];
}

let store: TestStore;
let api: ReturnType<typeof client>;
let sql: postgres.Sql;
before(async () => {
  // The gateway trusts one proxy hop, and each call claims an address of its own, so that only
  // the tests of per-address limits meet them.
  store = await startTestStore({
    serviceEnv: { gateway: { TRUST_PROXY: "1" }, "db-service": { REGISTER_ADDRESS_MAX: "3" } },
  });
  api = client(store.url, { addressPerCall: true });
  sql = postgres(store.stack.databaseUrl, { max: 2, onnotice: () => {} });
});
after(async () => {
  await sql?.end();
  await store?.stop();
});

let n = 0;
function newAccount(prefix = "u") {
  n++;
  const tag = `${prefix}${n}x${process.pid}`.slice(0, 15);
  return {
    sid: tag,
    username: `${prefix}_${n}_${process.pid}`,
    email: `${tag}@example.com`,
    password: "correct horse battery",
  };
}

async function register(account = newAccount()): Promise<{ account: typeof account; user: User; token: string }> {
  const reg = await api<User>("POST", "/users/register", { body: account });
  assert.equal(reg.status, 201, reg.text);
  const login = await api<{ token: string }>("POST", "/users/login", {
    body: { username: account.username, password: account.password },
  });
  assert.equal(login.status, 200, login.text);
  return { account, user: reg.body, token: login.body.token };
}

function expectProblem(res: ApiResponse, status: number, code: string, fields?: string[]): Problem {
  assert.equal(res.status, status, res.text);
  assert.equal(res.headers.get("content-type")?.split(";")[0], "application/problem+json");
  const p = res.body as Problem;
  assert.equal(p.status, status);
  assert.equal(p.code, code, res.text);
  assert.equal(p.type, `urn:problem:merch:${code}`);
  assert.ok(p.title.length > 0 && p.detail.length > 0);
  if (fields) assert.deepEqual(p.errors?.map((e) => e.field).sort(), [...fields].sort(), res.text);
  return p;
}

async function countRows(): Promise<Record<string, number>> {
  const [row] =
    await sql`SELECT (SELECT count(*) FROM users)::int AS users, (SELECT count(*) FROM orders)::int AS orders,
    (SELECT count(*) FROM sessions)::int AS sessions, (SELECT sum(stock) FROM products)::int AS stock`;
  return row as Record<string, number>;
}

// Product pages may be up to PRODUCT_CACHE_TTL_MS old; the database says what stock is now.
async function stockOf(productId: number): Promise<number> {
  const [row] = await sql`SELECT stock FROM products WHERE id = ${productId}`;
  return Number(row?.stock);
}

function newProduct(stock: number): Promise<number> {
  return putProduct(sql, { price: "5.00", stock });
}

describe("store and products", () => {
  test("GET / welcomes", async () => {
    const res = await api("GET", "/");
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { message: "Welcome to the SUSTech Merch Store!" });
  });

  test("GET /products lists the three seeded products by id with exact prices", async () => {
    const res = await api<{ id: number; name: string; category: string; price: string; stock: number }[]>(
      "GET",
      "/products",
    );
    assert.equal(res.status, 200);
    assert.deepEqual(
      res.body.slice(0, 3).map((p) => [p.id, p.name, p.category, p.price, p.stock]),
      [
        [1, "SUSTech Hoodie", "Apparel", "49.99", 500],
        [2, "SUSTech Water Bottle", "Drinkware", "19.99", 500],
        [3, "SUSTech Notebook", "Stationery", "9.99", 500],
      ],
    );
    assert.match(res.text, /"price":"49\.99"/, "money is a JSON string, not a number");
  });

  test("GET /products/{id}: 200, 400 for ids that are not positive integers, 404", async () => {
    const ok = await api<{ name: string }>("GET", "/products/3");
    assert.equal(ok.status, 200);
    assert.equal(ok.body.name, "SUSTech Notebook");
    for (const bad of ["abc", "0", "-1", "1.5", "99999999999"]) {
      expectProblem(await api("GET", `/products/${bad}`), 400, "validation_failed", ["id"]);
    }
    expectProblem(await api("GET", "/products/999"), 404, "product_not_found");
  });
});

describe("accounts", () => {
  test("POST /users/register: 201 with Location, and never a password or hash", async () => {
    const account = newAccount();
    const res = await api<User>("POST", "/users/register", { body: account });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get("location"), "/users/me");
    assert.equal(res.body.sid, account.sid);
    assert.equal(res.body.is_active, true);
    assert.ok(!res.text.includes(account.password) && !/hash|argon/i.test(res.text));
  });

  test("POST /users/register refuses bad input with field errors and writes nothing", async () => {
    const before = await countRows();
    const good = newAccount();
    const cases: [Record<string, unknown>, string[]][] = [
      [{ ...good, sid: "" }, ["sid"]],
      [{ ...good, sid: "has space" }, ["sid"]],
      [{ ...good, sid: "1234567890123456" }, ["sid"]],
      [{ ...good, username: "ab" }, ["username"]],
      [{ ...good, username: "no spaces allowed" }, ["username"]],
      [{ ...good, email: "not-an-email" }, ["email"]],
      [{ ...good, email: `${"a".repeat(250)}@example.com` }, ["email"]],
      [{ ...good, password: "short" }, ["password"]],
      [{ ...good, password: "x".repeat(129) }, ["password"]],
      [{ ...good, is_admin: true }, ["is_admin"]],
      [{ sid: good.sid }, ["username", "email", "password"]],
    ];
    for (const [body, fields] of cases) {
      expectProblem(await api("POST", "/users/register", { body }), 400, "validation_failed", fields);
    }
    expectProblem(await api("POST", "/users/register", { body: [good] }), 400, "validation_failed", ["body"]);
    expectProblem(
      await api("POST", "/users/register", {
        rawBody: '{"sid": "1",',
        headers: { "content-type": "application/json" },
      }),
      400,
      "malformed_json",
    );
    expectProblem(
      await api("POST", "/users/register", {
        rawBody: '{"__proto__": {"admin": true}, "sid": "x"}',
        headers: { "content-type": "application/json" },
      }),
      400,
      "malformed_json",
    );
    expectProblem(
      await api("POST", "/users/register", { rawBody: "sid=1", headers: { "content-type": "text/plain" } }),
      415,
      "unsupported_media_type",
    );
    expectProblem(
      await api("POST", "/users/register", { body: { ...good, password: "p".repeat(70 * 1024) } }),
      413,
      "payload_too_large",
    );
    assert.deepEqual(await countRows(), before);
  });

  test("POST /users/register: 409 sid_taken, username_taken, email_taken (case-insensitive)", async () => {
    const { account } = await register();
    const other = newAccount();
    expectProblem(await api("POST", "/users/register", { body: { ...other, sid: account.sid } }), 409, "sid_taken");
    expectProblem(
      await api("POST", "/users/register", { body: { ...other, username: account.username.toUpperCase() } }),
      409,
      "username_taken",
    );
    expectProblem(
      await api("POST", "/users/register", { body: { ...other, email: account.email.toUpperCase() } }),
      409,
      "email_taken",
    );
  });

  test("POST /users/login by username or sid gives a 24 h Bearer token", async () => {
    const { account, user } = await register();
    for (const body of [
      { username: account.username, password: account.password },
      { sid: account.sid, password: account.password },
    ]) {
      const res = await api<{ token: string; token_type: string; expires_in: number; user: User }>(
        "POST",
        "/users/login",
        { body },
      );
      assert.equal(res.status, 200);
      assert.equal(res.body.token_type, "Bearer");
      assert.equal(res.body.expires_in, 86400);
      assert.equal(res.body.user.id, user.id);
      const [, payload] = res.body.token.split(".");
      const claims = JSON.parse(Buffer.from(payload ?? "", "base64url").toString()) as Record<string, unknown>;
      assert.equal(claims.sub, String(user.id));
      assert.equal(Number(claims.exp) - Number(claims.iat), 86400);
      for (const claim of ["iss", "aud", "jti"]) assert.ok(claims[claim], claim);
    }
  });

  test("POST /users/login: 400 unless exactly one of username and sid, with a password", async () => {
    const { account } = await register();
    expectProblem(
      await api("POST", "/users/login", { body: { username: account.username, sid: account.sid, password: "x" } }),
      400,
      "validation_failed",
    );
    expectProblem(await api("POST", "/users/login", { body: { password: "x" } }), 400, "validation_failed");
    expectProblem(
      await api("POST", "/users/login", { body: { username: account.username } }),
      400,
      "validation_failed",
      ["password"],
    );
    expectProblem(
      await api("POST", "/users/login", { rawBody: "{}", headers: { "content-type": "application/xml" } }),
      415,
      "unsupported_media_type",
    );
    expectProblem(
      await api("POST", "/users/login", { body: { username: account.username, password: "p".repeat(70_000) } }),
      413,
      "payload_too_large",
    );
  });

  test("POST /users/login: 401 alike for an unknown user and a wrong password", async () => {
    const { account } = await register();
    const unknown = expectProblem(
      await api("POST", "/users/login", { body: { username: "nobody_at_all", password: account.password } }),
      401,
      "invalid_credentials",
    );
    const wrong = expectProblem(
      await api("POST", "/users/login", { body: { username: account.username, password: "wrong password" } }),
      401,
      "invalid_credentials",
    );
    assert.deepEqual(unknown, wrong);
  });

  test("POST /users/login: 429 with Retry-After after repeated failures, even with the right password", async () => {
    const { account } = await register();
    for (let i = 0; i < 5; i++) {
      expectProblem(
        await api("POST", "/users/login", { body: { username: account.username, password: `wrong ${i}` } }),
        401,
        "invalid_credentials",
      );
    }
    const res = await api("POST", "/users/login", { body: { username: account.username, password: account.password } });
    expectProblem(res, 429, "too_many_attempts");
    const retryAfter = Number(res.headers.get("retry-after"));
    assert.ok(retryAfter > 0 && retryAfter <= 900, `Retry-After ${retryAfter}`);
    // The lock is for this account; others log in as usual.
    await register();
  });

  test("POST /users/register: 429 with Retry-After after too many registrations from one address", async () => {
    const from = { "x-forwarded-for": "10.250.0.1" };
    for (let i = 0; i < 3; i++) {
      assert.equal((await api("POST", "/users/register", { body: newAccount("r"), headers: from })).status, 201);
    }
    const res = await api("POST", "/users/register", { body: newAccount("r"), headers: from });
    expectProblem(res, 429, "too_many_registrations");
    assert.ok(Number(res.headers.get("retry-after")) > 0);
    // Another address registers as usual.
    await register();
  });

  test("POST /users/logout: 204; that token stops at once, the account's other tokens go on", async () => {
    const { account, token } = await register();
    const other = await api<{ token: string }>("POST", "/users/login", {
      body: { username: account.username, password: account.password },
    });
    // Used (and remembered by the gateway) just before.
    assert.equal((await api("GET", "/users/me", { token })).status, 200);
    expectProblem(await api("POST", "/users/logout"), 401, "authentication_required");
    const res = await api("POST", "/users/logout", { token });
    assert.equal(res.status, 204);
    assert.equal(res.text, "");
    assert.equal(res.headers.get("cache-control"), "no-store");
    expectProblem(await api("GET", "/users/me", { token }), 401, "invalid_token");
    expectProblem(await api("POST", "/users/logout", { token }), 401, "invalid_token");
    expectProblem(await api("GET", "/orders", { token }), 401, "invalid_token");
    assert.equal((await api("GET", "/users/me", { token: other.body.token })).status, 200);
  });

  test("GET /users/me: 200 with a token, 401 with WWW-Authenticate without one", async () => {
    const { user, token } = await register();
    const me = await api<User>("GET", "/users/me", { token });
    assert.equal(me.status, 200);
    assert.deepEqual(me.body, user);
    const anonymous = await api("GET", "/users/me");
    expectProblem(anonymous, 401, "authentication_required");
    assert.match(anonymous.headers.get("www-authenticate") ?? "", /^Bearer/);
  });

  test("PATCH /users/me changes username and email, and the password with the current one", async () => {
    const { account, token } = await register();
    const renamed = await api<User>("PATCH", "/users/me", {
      token,
      body: { username: `${account.username}_b`, email: `b.${account.email}` },
    });
    assert.equal(renamed.status, 200);
    assert.equal(renamed.body.username, `${account.username}_b`);
    assert.equal(renamed.body.email, `b.${account.email}`);

    expectProblem(
      await api("PATCH", "/users/me", { token, body: { password: "a brand new secret" } }),
      400,
      "validation_failed",
      ["current_password"],
    );
    expectProblem(
      await api("PATCH", "/users/me", {
        token,
        body: { password: "a brand new secret", current_password: "nope nope" },
      }),
      403,
      "wrong_current_password",
    );
    const changed = await api("PATCH", "/users/me", {
      token,
      body: { password: "a brand new secret", current_password: account.password },
    });
    assert.equal(changed.status, 200);
    const relogin = await api("POST", "/users/login", { body: { sid: account.sid, password: "a brand new secret" } });
    assert.equal(relogin.status, 200);
  });

  test("PATCH /users/me: 400 empty or invalid, 401, 409 taken, 413, 415", async () => {
    const { token } = await register();
    const { account: other } = await register();
    expectProblem(await api("PATCH", "/users/me", { token, body: {} }), 400, "validation_failed");
    expectProblem(await api("PATCH", "/users/me", { token, body: { email: "bad" } }), 400, "validation_failed", [
      "email",
    ]);
    expectProblem(await api("PATCH", "/users/me", { token, body: { sid: "NEW1" } }), 400, "validation_failed", [
      "body",
      "sid",
    ]);
    expectProblem(await api("PATCH", "/users/me", { body: { email: "a@b.co" } }), 401, "authentication_required");
    expectProblem(
      await api("PATCH", "/users/me", { token, body: { username: other.username } }),
      409,
      "username_taken",
    );
    expectProblem(
      await api("PATCH", "/users/me", { token, body: { email: other.email.toUpperCase() } }),
      409,
      "email_taken",
    );
    expectProblem(
      await api("PATCH", "/users/me", { token, rawBody: "email=x", headers: { "content-type": "text/plain" } }),
      415,
      "unsupported_media_type",
    );
    expectProblem(
      await api("PATCH", "/users/me", { token, body: { username: "u".repeat(70_000) } }),
      413,
      "payload_too_large",
    );
  });

  test("POST /users/me/deactivate: 204, the row stays, its tokens stop at once, login is 403", async () => {
    const { account, user, token } = await register();
    expectProblem(await api("POST", "/users/me/deactivate"), 401, "authentication_required");
    const res = await api("POST", "/users/me/deactivate", { token });
    assert.equal(res.status, 204);
    assert.equal(res.text, "");
    expectProblem(await api("GET", "/users/me", { token }), 401, "invalid_token");
    expectProblem(
      await api("POST", "/users/login", { body: { username: account.username, password: account.password } }),
      403,
      "account_deactivated",
    );
    const [row] = await sql`SELECT is_active FROM users WHERE id = ${user.id}`;
    assert.equal(row?.is_active, false);
  });
});

describe("orders", () => {
  test("POST /orders: 201 with Location, prices from the database, stock taken", async () => {
    const { user, token } = await register();
    const productId = await newProduct(10);
    const res = await api<Order>("POST", "/orders", { token, body: { product_id: productId, quantity: 3 } });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get("location"), `/orders/${res.body.id}`);
    assert.equal(res.body.user_id, user.id);
    assert.equal(res.body.unit_price, "5.00");
    assert.equal(res.body.total_price, "15.00");
    assert.equal(res.body.status, "placed");
    assert.equal(res.body.cancelled_at, null);
    assert.equal(await stockOf(productId), 7);
  });

  test("POST /orders refuses bad input, unknown products and too little stock, and writes nothing", async () => {
    const { token } = await register();
    const productId = await newProduct(2);
    const before = await countRows();
    const cases: [unknown, string[]][] = [
      [{ product_id: 1, quantity: 0 }, ["quantity"]],
      [{ product_id: 1, quantity: 4 }, ["quantity"]],
      [{ product_id: 1, quantity: "3" }, ["quantity"]],
      [{ product_id: 1, quantity: 1.5 }, ["quantity"]],
      [{ product_id: -1, quantity: 1 }, ["product_id"]],
      [{ product_id: 1 }, ["quantity"]],
      [{ product_id: 1, quantity: 1, price: "0.01" }, ["price"]],
    ];
    for (const [body, fields] of cases) {
      expectProblem(await api("POST", "/orders", { token, body }), 400, "validation_failed", fields);
    }
    expectProblem(
      await api("POST", "/orders", {
        token,
        body: { product_id: 1, quantity: 1 },
        headers: { "idempotency-key": "é" },
      }),
      400,
      "validation_failed",
      ["Idempotency-Key"],
    );
    expectProblem(
      await api("POST", "/orders", { body: { product_id: 1, quantity: 1 } }),
      401,
      "authentication_required",
    );
    expectProblem(
      await api("POST", "/orders", { token, body: { product_id: 424242, quantity: 1 } }),
      404,
      "product_not_found",
    );
    expectProblem(
      await api("POST", "/orders", { token, body: { product_id: productId, quantity: 3 } }),
      409,
      "insufficient_stock",
    );
    expectProblem(
      await api("POST", "/orders", {
        token,
        rawBody: "product_id=1",
        headers: { "content-type": "application/x-www-form-urlencoded" },
      }),
      415,
      "unsupported_media_type",
    );
    expectProblem(
      await api("POST", "/orders", {
        token,
        rawBody: `{"product_id": 1, "quantity": 1, "pad": "${"x".repeat(70_000)}"}`,
        headers: { "content-type": "application/json" },
      }),
      413,
      "payload_too_large",
    );
    assert.deepEqual(await countRows(), before);
  });

  test("an Idempotency-Key replays the first order, charges stock once, and 422 for another body", async () => {
    const { token } = await register();
    const productId = await newProduct(10);
    const headers = { "idempotency-key": "checkout-7f3a" };
    const first = await api<Order>("POST", "/orders", { token, headers, body: { product_id: productId, quantity: 2 } });
    const again = await api<Order>("POST", "/orders", { token, headers, body: { product_id: productId, quantity: 2 } });
    assert.equal(first.status, 201);
    assert.equal(again.status, 201);
    assert.equal(first.headers.get("idempotent-replayed"), null);
    assert.equal(again.headers.get("idempotent-replayed"), "true");
    assert.deepEqual(again.body, first.body);
    assert.equal(await stockOf(productId), 8);
    expectProblem(
      await api("POST", "/orders", { token, headers, body: { product_id: productId, quantity: 1 } }),
      422,
      "idempotency_key_reused",
    );
  });

  test("GET /orders/{id}: own order 200; another user's or unknown 404; 400; 401", async () => {
    const owner = await register();
    const stranger = await register();
    const placed = await api<Order>("POST", "/orders", { token: owner.token, body: { product_id: 3, quantity: 1 } });
    const got = await api<Order>("GET", `/orders/${placed.body.id}`, { token: owner.token });
    assert.equal(got.status, 200);
    assert.deepEqual(got.body, placed.body);
    expectProblem(await api("GET", `/orders/${placed.body.id}`, { token: stranger.token }), 404, "order_not_found");
    expectProblem(await api("GET", "/orders/987654", { token: owner.token }), 404, "order_not_found");
    expectProblem(await api("GET", "/orders/x1", { token: owner.token }), 400, "validation_failed", ["id"]);
    expectProblem(await api("GET", `/orders/${placed.body.id}`), 401, "authentication_required");
  });

  test("GET /orders: own orders, newest first, by pages; 400 for bad limits and cursors; 401", async () => {
    const { user, token } = await register();
    const other = await register();
    await api("POST", "/orders", { token: other.token, body: { product_id: 3, quantity: 1 } });
    const ids: number[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push((await api<Order>("POST", "/orders", { token, body: { product_id: 3, quantity: 1 } })).body.id);
    }
    const seenIds: number[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = cursor === null ? "?limit=2" : `?limit=2&cursor=${cursor}`;
      const page: ApiResponse<{ items: Order[]; next_cursor: string | null }> = await api("GET", `/orders${query}`, {
        token,
      });
      assert.equal(page.status, 200);
      for (const o of page.body.items) assert.equal(o.user_id, user.id);
      seenIds.push(...page.body.items.map((o) => o.id));
      cursor = page.body.next_cursor;
      pages++;
    } while (cursor !== null);
    assert.equal(pages, 3);
    assert.deepEqual(seenIds, [...ids].reverse());
    const all = await api<{ items: Order[] }>("GET", "/orders", { token });
    assert.deepEqual(
      all.body.items.map((o) => o.id),
      [...ids].reverse(),
    );
    for (const q of ["limit=0", "limit=101", "limit=ten"]) {
      expectProblem(await api("GET", `/orders?${q}`, { token }), 400, "validation_failed", ["limit"]);
    }
    expectProblem(await api("GET", "/orders?cursor=not-a-cursor", { token }), 400, "validation_failed", ["cursor"]);
    expectProblem(await api("GET", "/orders?cursor=%25%25", { token }), 400, "validation_failed", ["cursor"]);
    expectProblem(await api("GET", "/orders"), 401, "authentication_required");
  });

  test("POST /orders/{id}/cancel gives stock back once; repeats answer 200; others' orders 404", async () => {
    const { token } = await register();
    const stranger = await register();
    const productId = await newProduct(5);
    const placed = await api<Order>("POST", "/orders", { token, body: { product_id: productId, quantity: 2 } });
    expectProblem(
      await api("POST", `/orders/${placed.body.id}/cancel`, { token: stranger.token }),
      404,
      "order_not_found",
    );
    const results = await Promise.all(
      Array.from({ length: 4 }, () => api<Order>("POST", `/orders/${placed.body.id}/cancel`, { token })),
    );
    for (const r of results) {
      assert.equal(r.status, 200);
      assert.equal(r.body.status, "cancelled");
      assert.ok(r.body.cancelled_at);
    }
    assert.equal(await stockOf(productId), 5);
    expectProblem(await api("POST", "/orders/0/cancel", { token }), 400, "validation_failed", ["id"]);
    expectProblem(await api("POST", "/orders/777777/cancel", { token }), 404, "order_not_found");
    expectProblem(await api("POST", `/orders/${placed.body.id}/cancel`), 401, "authentication_required");
    expectProblem(
      await api("POST", `/orders/${placed.body.id}/cancel`, { token, body: { reason: "changed my mind" } }),
      400,
      "validation_failed",
      ["body"],
    );
  });
});

describe("running the shop (staff)", () => {
  /** A staff account: registered, then granted the role as an operator does (one UPDATE here). */
  async function staffAccount() {
    const staff = await register(newAccount("st"));
    await sql`UPDATE users SET role = 'staff' WHERE id = ${staff.user.id}`;
    return staff;
  }
  const tooLarge = (body: Record<string, unknown>) => ({
    rawBody: JSON.stringify({ ...body, pad: "x".repeat(70_000) }),
    headers: { "content-type": "application/json" },
  });
  const form = { rawBody: "name=x", headers: { "content-type": "application/x-www-form-urlencoded" } };

  test("POST /products, PATCH /products/{id}, POST /products/{id}/stock: every documented answer", async () => {
    const { token } = await staffAccount();
    const customer = await register();
    const body = { name: `Contract cap ${process.pid}`, category: "Apparel", price: "15.00", stock: 2 };
    const created = await api<{ id: number; name: string; stock: number }>("POST", "/products", { token, body });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.headers.get("location"), `/products/${created.body.id}`);
    const id = created.body.id;
    const routes: [string, string, Record<string, unknown>][] = [
      ["POST", "/products", { name: "Another", category: "X", price: "1.00" }],
      ["PATCH", `/products/${id}`, { price: "16.00" }],
      ["POST", `/products/${id}/stock`, { delta: 3, reason: "delivery" }],
    ];
    for (const [method, path, ok] of routes) {
      expectProblem(await api(method, path, { body: ok }), 401, "authentication_required");
      expectProblem(await api(method, path, { token: customer.token, body: ok }), 403, "staff_only");
      expectProblem(await api(method, path, { token, body: { ...ok, unknown: 1 } }), 400, "validation_failed");
      expectProblem(await api(method, path, { token, ...form }), 415, "unsupported_media_type");
      expectProblem(await api(method, path, { token, ...tooLarge(ok) }), 413, "payload_too_large");
    }
    expectProblem(await api("POST", "/products", { token, body }), 409, "product_name_taken");
    expectProblem(
      await api("PATCH", `/products/${id}`, { token, body: { name: "SUSTech Hoodie" } }),
      409,
      "product_name_taken",
    );
    expectProblem(await api("PATCH", "/products/999999", { token, body: { price: "1.00" } }), 404, "product_not_found");
    expectProblem(
      await api("POST", "/products/999999/stock", { token, body: { delta: 1, reason: "x" } }),
      404,
      "product_not_found",
    );
    expectProblem(
      await api("POST", `/products/${id}/stock`, { token, body: { delta: -3, reason: "count" } }),
      409,
      "insufficient_stock",
    );
    const patched = await api<{ price: string }>("PATCH", `/products/${id}`, { token, body: { price: "16.00" } });
    assert.equal(patched.status, 200, patched.text);
    assert.equal(patched.body.price, "16.00");
    const restocked = await api<{ stock: number }>("POST", `/products/${id}/stock`, {
      token,
      body: { delta: 3, reason: "delivery" },
    });
    assert.equal(restocked.status, 200, restocked.text);
    assert.equal(restocked.body.stock, 5);
    assert.equal(await stockOf(id), 5);
  });

  test("GET /staff/orders and the hand-over: every documented answer, and a customer cannot cancel a ready order", async () => {
    const { token } = await staffAccount();
    const customer = await register();
    const placed = await api<Order>("POST", "/orders", {
      token: customer.token,
      body: { product_id: 3, quantity: 1 },
    });
    assert.equal(placed.status, 201, placed.text);
    const id = placed.body.id;

    expectProblem(await api("GET", "/staff/orders"), 401, "authentication_required");
    expectProblem(await api("GET", "/staff/orders", { token: customer.token }), 403, "staff_only");
    expectProblem(await api("GET", "/staff/orders?status=gone", { token }), 400, "validation_failed", ["status"]);
    const page = await api<{ items: Order[]; next_cursor: string | null }>(
      "GET",
      `/staff/orders?status=placed&product_id=3&limit=100`,
      { token },
    );
    assert.equal(page.status, 200, page.text);
    assert.ok(page.body.items.some((o) => o.id === id && o.user_id === customer.user.id));

    for (const step of ["ready", "collected"]) {
      expectProblem(await api("POST", `/orders/${id}/${step}`), 401, "authentication_required");
      expectProblem(await api("POST", `/orders/${id}/${step}`, { token: customer.token }), 403, "staff_only");
      expectProblem(await api("POST", `/orders/0/${step}`, { token }), 400, "validation_failed");
      expectProblem(await api("POST", `/orders/999999/${step}`, { token }), 404, "order_not_found");
    }
    expectProblem(await api("POST", `/orders/${id}/collected`, { token }), 409, "invalid_transition");
    const ready = await api<Order>("POST", `/orders/${id}/ready`, { token });
    assert.equal(ready.status, 200, ready.text);
    assert.equal(ready.body.status, "ready");
    expectProblem(await api("POST", `/orders/${id}/ready`, { token }), 409, "invalid_transition");
    expectProblem(await api("POST", `/orders/${id}/cancel`, { token: customer.token }), 409, "invalid_transition");
    const collected = await api<Order>("POST", `/orders/${id}/collected`, { token });
    assert.equal(collected.status, 200, collected.text);
    assert.equal(collected.body.status, "collected");
    const seenByCustomer = await api<Order>("GET", `/orders/${id}`, { token: customer.token });
    assert.equal(seenByCustomer.body.status, "collected");
  });
});

describe("operations", () => {
  test("GET /healthz and /readyz", async () => {
    const health = await api<{ status: string }>("GET", "/healthz");
    assert.equal(health.status, 200);
    assert.equal(health.body.status, "ok");
    const ready = await api<{ checks: Record<string, string> }>("GET", "/readyz");
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.body.checks, { db_service: "SERVING", log_service: "SERVING" });
  });

  test("GET /openapi.yaml serves the spec, /docs an interactive reference", async () => {
    const spec = await api("GET", "/openapi.yaml");
    assert.equal(spec.status, 200);
    assert.equal(spec.text, readFileSync(SPEC_PATH, "utf8"));
    const docs = await api("GET", "/docs");
    assert.equal(docs.status, 200);
    assert.match(docs.text, /swagger-ui/i);
  });

  test("GET /metrics serves Prometheus text with the requests just answered", async () => {
    const metrics = await api("GET", "/metrics");
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, /^# TYPE http_server_request_duration_seconds histogram$/m);
    assert.match(
      metrics.text,
      /http_server_request_duration_seconds_count\{[^}]*http_route="\/openapi.yaml"[^}]*\} [1-9]/,
    );
  });

  test("unknown routes are 404 problem details", async () => {
    expectProblem(await api("GET", "/nowhere"), 404, "not_found");
    expectProblem(await api("DELETE", "/products/1"), 404, "not_found");
  });

  test("GET /readyz is 503 not_ready while log-service is down, and 200 again once it is back", async () => {
    const log = store.stack.services["log-service"];
    await log.stop();
    const res = await api<{ checks: Record<string, string> }>("GET", "/readyz");
    expectProblem(res, 503, "not_ready");
    assert.deepEqual(res.body.checks, { db_service: "SERVING", log_service: "UNREACHABLE" });
    log.start();
    let status = 0;
    for (let i = 0; i < 100 && status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 200));
      status = (await api("GET", "/readyz")).status;
    }
    assert.equal(status, 200);
  });
});

test("every status the spec documents for every route was answered and checked", () => {
  const missing = documentedStatuses().filter((s) => !seen.has(s));
  assert.deepEqual(missing, []);
});
