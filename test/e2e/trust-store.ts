import assert from "node:assert/strict";
import { after, before } from "node:test";
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { type ApiResponse, client, startTestStore, type TestStore } from "@merch/devstack";
import { ShopService } from "@merch/gen/merch/shop/v1/shop_pb";
import postgres from "postgres";

// The store each trust suite (trust-*.test.ts) starts for itself, and what they do with it. The
// bindings below are live: they hold the running store once useTrustStore's \`before\` ran.

export const PASSWORD = "trust tests password";

export let store: TestStore;
export let api: ReturnType<typeof client>;
export let sql: postgres.Sql;
export let shop: Client<typeof ShopService>;

/** Starts the store before the file's tests and stops it after them. */
export function useTrustStore(): void {
  before(async () => {
    // Kafka off: log-service writes log-channel.jsonl in the data directory. TRUST_PROXY unset, as
    // under npm start: X-Forwarded-For is nobody's word.
    store = await startTestStore();
    api = client(store.url);
    sql = postgres(store.stack.databaseUrl, { max: 2, onnotice: () => {} });
    shop = createClient(ShopService, createConnectTransport({ baseUrl: store.url, httpVersion: "1.1" }));
  });
  after(async () => {
    await sql?.end();
    await store?.stop();
  });
}

export interface Account {
  id: number;
  sid: string;
  username: string;
  email: string;
  password: string;
  token: string;
}

let n = 0;
export async function newAccount(prefix = "tr"): Promise<Account> {
  n++;
  const tag = `${prefix}${process.pid}x${n}`.replace(/[^A-Za-z0-9]/g, "").slice(-15);
  const body = { sid: tag, username: `${prefix}_${process.pid}_${n}`, email: `${tag}@example.com`, password: PASSWORD };
  const reg = await api<{ id: number }>("POST", "/users/register", { body });
  assert.equal(reg.status, 201, reg.text);
  return { id: reg.body.id, ...body, token: await login(body.username) };
}

export async function login(username: string, password = PASSWORD): Promise<string> {
  const res = await api<{ token: string }>("POST", "/users/login", { body: { username, password } });
  assert.equal(res.status, 200, res.text);
  return res.body.token;
}

export const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

export function expectInvalidToken(res: ApiResponse, where: string) {
  assert.equal(res.status, 401, `${where}: ${res.text}`);
  assert.equal((res.body as { code?: string }).code, "invalid_token", `${where}: ${res.text}`);
  assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer realm="[^"]+".*error="invalid_token"/, where);
}

/** What an attack could have changed: the account's row, every session, order and throttle window, all stock. */
export async function snapshot(userId: number) {
  const [row] = await sql`SELECT
    (SELECT row_to_json(u) FROM users u WHERE u.id = ${userId}) AS account,
    (SELECT count(*)::int FROM users) AS users,
    (SELECT coalesce(json_agg(s ORDER BY s.id), '[]') FROM sessions s) AS sessions,
    (SELECT coalesce(json_agg(o ORDER BY o.id), '[]') FROM orders o) AS orders,
    (SELECT coalesce(json_agg(t ORDER BY t.key), '[]') FROM throttle t) AS throttle,
    (SELECT sum(stock)::int FROM products) AS stock`;
  return row;
}

export async function placeOrder(token: string): Promise<number> {
  const res = await api<{ id: number }>("POST", "/orders", { token, body: { product_id: 2, quantity: 1 } });
  assert.equal(res.status, 201, res.text);
  return res.body.id;
}
