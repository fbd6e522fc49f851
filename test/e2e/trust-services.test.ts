import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { connect } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { type Client, Code, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { type ApiResponse, type CallOptions, client, startTestStore, type TestStore } from "@merch/devstack";
import { Health, HealthCheckResponse_ServingStatus } from "@merch/gen/grpc/health/v1/health_pb";
import { ServerReflection } from "@merch/gen/grpc/reflection/v1/reflection_pb";
import { LogLevel, LogService } from "@merch/gen/merch/log/v1/log_pb";
import { ShopService } from "@merch/gen/merch/shop/v1/shop_pb";
import { OrderService } from "@merch/gen/merch/store/v1/order_pb";
import { UserService } from "@merch/gen/merch/store/v1/user_pb";
import { GuardedSessionManager } from "@merch/kit";
import { REPO_ROOT, rejectsWith } from "@merch/testkit";
import postgres from "postgres";
import {
  connectJson,
  connectStreamJson,
  logLines,
  parseRaw,
  rawHttp,
  sessionIdOf,
  waitForLogFile,
} from "./trust-support.ts";

// The trust boundary of the store, proved against the real processes: db-service and log-service
// act only for callers holding the store's credential and listen on loopback; a token stops at
// once when its session ends, even right after the gateway verified (and cached) it, and never
// names another account after a database reset; every answer carries the security headers; no
// control character in any field of any route gets further than a 400 (or a failed login).
// Login throttling and the audit of failed logins are in trust-login.test.ts.

const run = promisify(execFile);
const PASSWORD = "trust tests password";

let store: TestStore;
let api: ReturnType<typeof client>;
let sql: postgres.Sql;
let shop: Client<typeof ShopService>;
/** HTTP/2 sessions to the internal services, closed in `after` so that none keeps the process alive. */
const h2: GuardedSessionManager[] = [];

before(async () => {
  // Kafka off: log-service writes log-channel.jsonl in the data directory. TRUST_PROXY unset, as
  // under npm start: X-Forwarded-For is nobody's word.
  store = await startTestStore();
  api = client(store.url);
  sql = postgres(store.stack.databaseUrl, { max: 2, onnotice: () => {} });
  shop = createClient(ShopService, createConnectTransport({ baseUrl: store.url, httpVersion: "1.1" }));
});
after(async () => {
  for (const m of h2) m.abort();
  await sql?.end();
  await store?.stop();
});

interface Account {
  id: number;
  sid: string;
  username: string;
  email: string;
  password: string;
  token: string;
}

let n = 0;
async function newAccount(prefix = "tr"): Promise<Account> {
  n++;
  const tag = `${prefix}${process.pid}x${n}`.replace(/[^A-Za-z0-9]/g, "").slice(-15);
  const body = { sid: tag, username: `${prefix}_${process.pid}_${n}`, email: `${tag}@example.com`, password: PASSWORD };
  const reg = await api<{ id: number }>("POST", "/users/register", { body });
  assert.equal(reg.status, 201, reg.text);
  return { id: reg.body.id, ...body, token: await login(body.username) };
}

async function login(username: string, password = PASSWORD): Promise<string> {
  const res = await api<{ token: string }>("POST", "/users/login", { body: { username, password } });
  assert.equal(res.status, 200, res.text);
  return res.body.token;
}

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

function expectInvalidToken(res: ApiResponse, where: string) {
  assert.equal(res.status, 401, `${where}: ${res.text}`);
  assert.equal((res.body as { code?: string }).code, "invalid_token", `${where}: ${res.text}`);
  assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer realm="[^"]+".*error="invalid_token"/, where);
}

/** What an attack could have changed: the account's row, every session, order and throttle window, all stock. */
async function snapshot(userId: number) {
  const [row] = await sql`SELECT
    (SELECT row_to_json(u) FROM users u WHERE u.id = ${userId}) AS account,
    (SELECT count(*)::int FROM users) AS users,
    (SELECT coalesce(json_agg(s ORDER BY s.id), '[]') FROM sessions s) AS sessions,
    (SELECT coalesce(json_agg(o ORDER BY o.id), '[]') FROM orders o) AS orders,
    (SELECT coalesce(json_agg(t ORDER BY t.key), '[]') FROM throttle t) AS throttle,
    (SELECT sum(stock)::int FROM products) AS stock`;
  return row;
}

async function placeOrder(token: string): Promise<number> {
  const res = await api<{ id: number }>("POST", "/orders", { token, body: { product_id: 2, quantity: 1 } });
  assert.equal(res.status, 201, res.text);
  return res.body.id;
}

describe("db-service and log-service act only for the store", () => {
  let victim: Account;
  let orderId: number;
  let session: { userId: number; sessionId: string };
  let dbUrl: string;
  let logUrl: string;
  /** Wrong credentials an attacker might try; none may ever appear in a log. */
  const guesses = [`guess-${randomUUID()}`, "x".repeat(64)];
  /** The ids of every forged log event; none may reach log-channel. */
  const forgedIds: string[] = [];

  before(async () => {
    dbUrl = store.stack.services["db-service"].url;
    logUrl = store.stack.services["log-service"].url;
    victim = await newAccount("victim");
    orderId = await placeOrder(victim.token);
    // The attacker is given the victim's real session: only the credential stands in the way.
    session = { userId: victim.id, sessionId: sessionIdOf(victim.token) };
  });

  /** Every user and order RPC, with a request that would succeed if it carried the credential. */
  const attacks = (): [string, Record<string, unknown>][] => [
    ["merch.store.v1.UserService/GetUser", { session }],
    ["merch.store.v1.UserService/UpdateUser", { session, email: "attacker@evil.example" }],
    ["merch.store.v1.UserService/DeactivateUser", { session }],
    [
      "merch.store.v1.UserService/AuthenticateUser",
      { username: victim.username, password: victim.password, clientAddress: "203.0.113.9" },
    ],
    ["merch.store.v1.UserService/EndSession", { session }],
    [
      "merch.store.v1.UserService/RegisterUser",
      { sid: "evil1", username: "evil_user", email: "evil@evil.example", password: "evil password" },
    ],
    ["merch.store.v1.OrderService/CancelOrder", { session, orderId }],
    ["merch.store.v1.OrderService/ListOrders", { session }],
    ["merch.store.v1.OrderService/GetOrder", { session, orderId }],
    ["merch.store.v1.OrderService/PlaceOrder", { session, productId: 1, quantity: 3, idempotencyKey: "evil-1" }],
  ];

  /** The victim's account, sessions and order are as they were, and its token still works. */
  async function unharmed(was: unknown) {
    assert.deepEqual(await snapshot(victim.id), was, "a refused call changed the database");
    const me = await api<{ email: string; is_active: boolean }>("GET", "/users/me", { token: victim.token });
    assert.equal(me.status, 200, me.text);
    assert.equal(me.body.email, victim.email);
    const order = await api<{ status: string }>("GET", `/orders/${orderId}`, { token: victim.token });
    assert.equal(order.body.status, "placed");
  }

  test("Connect JSON over plain fetch: every user and order RPC is unauthenticated, and changes nothing", async () => {
    const was = await snapshot(victim.id);
    for (const [procedure, message] of attacks()) {
      for (const headers of [
        {},
        { "x-service-credential": guesses[0] ?? "" },
        { "x-service-credential": "" },
      ] as Record<string, string>[]) {
        const res = await connectJson(dbUrl, procedure, message, headers);
        assert.equal(res.status, 401, `${procedure} ${JSON.stringify(headers)}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.code, "unauthenticated", procedure);
        assert.ok(!JSON.stringify(res.body).includes(victim.email), `${procedure} leaked the account`);
      }
    }
    await unharmed(was);
    // The same request with the credential is answered: the refusals above were the credential's alone.
    const own = await connectJson(
      dbUrl,
      "merch.store.v1.UserService/GetUser",
      { session },
      {
        "x-service-credential": store.stack.serviceCredential,
      },
    );
    assert.equal(own.status, 200, JSON.stringify(own.body));
    assert.equal((own.body.user as { email?: string }).email, victim.email);
  });

  test("a Connect client, over gRPC (h2c), Connect JSON and Connect binary: the same refusals", async () => {
    const transports: Record<string, Transport> = {
      "gRPC over h2c": createGrpcTransport({ baseUrl: dbUrl, sessionManager: manager(dbUrl) }),
      "Connect JSON": createConnectTransport({ baseUrl: dbUrl, httpVersion: "1.1", useBinaryFormat: false }),
      "Connect binary": createConnectTransport({ baseUrl: dbUrl, httpVersion: "1.1", useBinaryFormat: true }),
    };
    const was = await snapshot(victim.id);
    for (const [name, transport] of Object.entries(transports)) {
      const users = createClient(UserService, transport);
      const orders = createClient(OrderService, transport);
      const refused = (call: Promise<unknown>) =>
        rejectsWith(call, Code.Unauthenticated, "service_credential_required");
      await refused(users.getUser({ session }));
      await refused(users.updateUser({ session, email: `attacker-${name.length}@evil.example` }));
      await refused(users.deactivateUser({ session }));
      await refused(users.authenticateUser({ login: { case: "sid", value: victim.sid }, password: victim.password }));
      await refused(users.endSession({ session }));
      await refused(orders.cancelOrder({ session, orderId }));
      await refused(orders.listOrders({ session }));
      // A wrong credential is no better than none.
      await refused(users.deactivateUser({ session }, { headers: { "x-service-credential": guesses[1] ?? "" } }));
    }
    await unharmed(was);
  });

  test("log-service: a forged user.login_succeeded by WriteLogs or StreamLogs is refused and never reaches log-channel", async () => {
    const forged = () => {
      const id = randomUUID();
      forgedIds.push(id);
      return {
        id,
        level: "LOG_LEVEL_INFO",
        service: "gateway",
        event: "user.login_succeeded",
        message: "logged in",
        userId: victim.id,
        requestId: `forged-${id}`,
        attributes: { login_type: "username", client_address: "203.0.113.66" },
      };
    };
    for (const headers of [{}, { "x-service-credential": guesses[0] ?? "" }] as Record<string, string>[]) {
      const res = await connectJson(logUrl, "merch.log.v1.LogService/WriteLogs", { events: [forged()] }, headers);
      assert.equal(res.status, 401, JSON.stringify(res.body));
      assert.equal(res.body.code, "unauthenticated");
      // A client stream over HTTP/1.1, one enveloped message, as a browser or curl can send it.
      const stream = await connectStreamJson(
        logUrl,
        "merch.log.v1.LogService/StreamLogs",
        [{ events: [forged()] }],
        headers,
      );
      assert.equal(stream.error?.code, "unauthenticated", JSON.stringify(stream));
    }
    // The long-lived stream the gateway uses, from a gRPC client without the credential.
    const logs = createClient(LogService, createGrpcTransport({ baseUrl: logUrl, sessionManager: manager(logUrl) }));
    const event = () => {
      const f = forged();
      return { ...f, level: LogLevel.INFO };
    };
    await rejectsWith(logs.writeLogs({ events: [event()] }), Code.Unauthenticated, "service_credential_required");
    async function* batches() {
      yield { events: [event()] };
      yield { events: [event()] };
    }
    await rejectsWith(logs.streamLogs(batches()), Code.Unauthenticated, "service_credential_required");

    // A marker written with the credential: once it is in the file, so would any accepted forgery be
    // (accepted means durable), and log-service is shown to take well-formed events of this shape.
    const marker = randomUUID();
    const ok = await connectJson(
      logUrl,
      "merch.log.v1.LogService/WriteLogs",
      { events: [{ ...forged(), id: marker, event: "test.marker", requestId: "marker" }] },
      { "x-service-credential": store.stack.serviceCredential },
    );
    forgedIds.pop();
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const records = await waitForLogFile(store.dataDir, (r) => r.some((x) => x.record.id === marker), "the marker");
    for (const r of records) {
      assert.ok(!forgedIds.includes(r.record.id), `a forged event reached log-channel: ${r.raw}`);
      assert.ok(!r.raw.includes("forged-"), `a forged event reached log-channel: ${r.raw}`);
      assert.ok(
        !(r.record.event === "user.login_succeeded" && r.record.attributes.client_address === "203.0.113.66"),
        r.raw,
      );
    }
  });

  test("product reads, health and reflection stay open on both services", async () => {
    const list = await connectJson(dbUrl, "merch.store.v1.ProductService/ListProducts", {});
    assert.equal(list.status, 200, JSON.stringify(list.body));
    assert.ok((list.body.products as unknown[]).length >= 3);
    const one = await connectJson(dbUrl, "merch.store.v1.ProductService/GetProduct", { id: 1 });
    assert.equal((one.body.product as { name?: string }).name, "SUSTech Hoodie");
    for (const url of [dbUrl, logUrl]) {
      const health = await connectJson(url, "grpc.health.v1.Health/Check", {});
      assert.equal(health.status, 200, JSON.stringify(health.body));
      assert.equal(health.body.status, "SERVING");
      const transport = createGrpcTransport({ baseUrl: url, sessionManager: manager(url) });
      const check = await createClient(Health, transport).check({ service: "" }, { timeoutMs: 10_000 });
      assert.equal(check.status, HealthCheckResponse_ServingStatus.SERVING);
      const services = await listServices(transport);
      assert.ok(services.includes("grpc.health.v1.Health"), services.join());
      assert.ok(
        services.includes(url === dbUrl ? "merch.store.v1.UserService" : "merch.log.v1.LogService"),
        services.join(),
      );
    }
  });

  test("each refusal is logged by the service that refused it, never with the credential given", () => {
    const refusals = (name: "db-service" | "log-service") =>
      logLines(store.stack.services[name]).filter((l) => l.msg === "refused a call without the service credential");
    const dbProcedures = new Set(refusals("db-service").map((l) => l.procedure));
    for (const [procedure] of attacks()) assert.ok(dbProcedures.has(procedure), `no refusal logged for ${procedure}`);
    const logProcedures = new Set(refusals("log-service").map((l) => l.procedure));
    for (const procedure of ["merch.log.v1.LogService/WriteLogs", "merch.log.v1.LogService/StreamLogs"]) {
      assert.ok(logProcedures.has(procedure), `no refusal logged for ${procedure}`);
    }
    const kinds = new Set([...refusals("db-service"), ...refusals("log-service")].map((l) => l.credential));
    assert.deepEqual([...kinds].sort(), ["missing", "wrong"]);
    for (const name of ["db-service", "log-service", "gateway"] as const) {
      const output = store.stack.services[name].output();
      for (const secret of [...guesses, store.stack.serviceCredential]) {
        assert.ok(!output.includes(secret), `${name} logged a credential`);
      }
    }
  });

  test("db-service, log-service and PostgreSQL listen on loopback only; the gateway on every address", async (t) => {
    const { stack } = store;
    const port = (url: string) => Number(new URL(url).port);
    const internal: [string, number | undefined, number][] = [
      ["db-service", stack.services["db-service"].child.pid, port(stack.services["db-service"].url)],
      ["log-service", stack.services["log-service"].child.pid, port(stack.services["log-service"].url)],
      ["postgres", stack.postgres?.pid, stack.postgres?.port ?? 0],
    ];
    for (const [name, pid, expectedPort] of internal) {
      assert.ok(pid, `${name} has a pid`);
      const sockets = listeningSockets(pid);
      assert.ok(
        sockets.some((s) => s.port === expectedPort),
        `${name} (pid ${pid}) listens on ${expectedPort}: ${JSON.stringify(sockets)}`,
      );
      for (const s of sockets) assert.equal(s.address, "127.0.0.1", `${name} listens on ${s.address}:${s.port}`);
    }
    // npm start runs the same startStack with no HOST: the gateway is the store's public door.
    const gatewayPort = port(stack.gatewayUrl);
    const gateway = listeningSockets(stack.services.gateway.child.pid ?? 0);
    assert.ok(
      gateway.some((s) => s.port === gatewayPort && s.address === "0.0.0.0"),
      `the gateway listens on 0.0.0.0:${gatewayPort}: ${JSON.stringify(gateway)}`,
    );

    // And from the outside: this machine's own non-loopback address reaches the gateway, not the rest.
    const external = Object.values(networkInterfaces())
      .flat()
      .find((i) => i && i.family === "IPv4" && !i.internal)?.address;
    if (external === undefined) {
      t.diagnostic("no non-loopback IPv4 address on this machine: the connect check is skipped");
      return;
    }
    const health = await fetch(`http://${external}:${gatewayPort}/healthz`, { signal: AbortSignal.timeout(5000) });
    assert.equal(health.status, 200);
    for (const [name, , p] of internal) {
      assert.equal(await connectOutcome(external, p), "ECONNREFUSED", `${name} at ${external}:${p}`);
    }
  });
});

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

describe("security headers", () => {
  const seen: { what: string; headers: Headers }[] = [];
  const keep = <T extends { headers: Headers }>(what: string, res: T): T => {
    seen.push({ what, headers: res.headers });
    return res;
  };

  function noStore(what: string, res: ApiResponse | JsonResponse) {
    assert.match(res.headers.get("cache-control") ?? "", /\bno-store\b/, `${what} is not Cache-Control: no-store`);
  }

  test("Cache-Control: no-store on login's answer and every answer to a signed-in user", async () => {
    const a = await newAccount();
    const loginAnswer = keep(
      "login",
      await api<{ token: string }>("POST", "/users/login", { body: { sid: a.sid, password: PASSWORD } }),
    );
    assert.equal(loginAnswer.status, 200);
    noStore("POST /users/login 200", loginAnswer);
    const token = loginAnswer.body.token;
    const signedIn: [string, string, CallOptions, number][] = [
      ["GET", "/users/me", {}, 200],
      ["PATCH", "/users/me", { body: { email: `new-${a.sid}@example.com` } }, 200],
      ["GET", "/orders", {}, 200],
      ["POST", "/orders", { body: { product_id: 3, quantity: 1 } }, 201],
    ];
    let orderId = 0;
    for (const [method, path, opts, status] of signedIn) {
      const res = keep(path, await api<{ id: number }>(method, path, { ...opts, token }));
      assert.equal(res.status, status, `${method} ${path}: ${res.text}`);
      noStore(`${method} ${path} ${status}`, res);
      if (path === "/orders" && method === "POST") orderId = res.body.id;
    }
    for (const [method, path] of [
      ["GET", `/orders/${orderId}`],
      ["POST", `/orders/${orderId}/cancel`],
      ["GET", "/orders/999999"],
    ] as const) {
      const res = keep(path, await api(method, path, { token }));
      assert.ok(res.status === 200 || res.status === 404, `${method} ${path}: ${res.text}`);
      noStore(`${method} ${path} ${res.status}`, res);
    }
    const spare = await login(a.username);
    const out = keep("logout", await api("POST", "/users/logout", { token: spare }));
    assert.equal(out.status, 204);
    noStore("POST /users/logout 204", out);

    // ShopService answers alike, its Login included.
    for (const [procedure, message, auth] of [
      ["Login", { sid: a.sid, password: PASSWORD }, {}],
      ["GetMe", {}, { authorization: `Bearer ${token}` }],
      ["ListOrders", {}, { authorization: `Bearer ${token}` }],
    ] as const) {
      const res = keep(
        procedure,
        await connectJson(store.url, `merch.shop.v1.ShopService/${procedure}`, message, auth),
      );
      assert.equal(res.status, 200, `${procedure}: ${JSON.stringify(res.body)}`);
      noStore(`ShopService/${procedure}`, res);
    }
    const gone = keep("deactivate", await api("POST", "/users/me/deactivate", { token }));
    assert.equal(gone.status, 204);
    noStore("POST /users/me/deactivate 204", gone);
  });

  test("/docs renders under its CSP: the page, swagger-ui's scripts and styles, and the spec it loads", async () => {
    const page = keep("/docs", await fetch(`${store.url}/docs`, { signal: AbortSignal.timeout(10_000) }));
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
    const csp = page.headers.get("content-security-policy") ?? "";
    assert.match(csp, /script-src 'self'/, `CSP of /docs: ${csp}`);
    const scriptSrc = /script-src ([^;]*)/.exec(csp)?.[1] ?? "";
    assert.ok(!scriptSrc.includes("unsafe"), `no unsafe script sources on /docs: ${csp}`);
    const html = await page.text();
    const scripts = [...html.matchAll(/<script src="([^"]+)"/g)].map((m) => m[1] ?? "");
    const styles = [...html.matchAll(/<link rel="stylesheet" type="text\/css" href="([^"]+)"/g)].map((m) => m[1] ?? "");
    assert.ok(
      scripts.some((s) => s.endsWith("swagger-ui-bundle.js")),
      html,
    );
    assert.ok(
      scripts.some((s) => s.endsWith("swagger-initializer.js")),
      html,
    );
    // With nosniff a browser runs a script only if it is served as JavaScript, a stylesheet only as CSS.
    for (const [paths, type] of [
      [scripts, /javascript/],
      [styles, /^text\/css/],
    ] as const) {
      for (const path of paths) {
        const res = keep(
          path,
          await fetch(new URL(path, `${store.url}/docs`), { signal: AbortSignal.timeout(10_000) }),
        );
        assert.equal(res.status, 200, path);
        assert.match(res.headers.get("content-type") ?? "", type, path);
        assert.ok((await res.arrayBuffer()).byteLength > 0, path);
      }
    }
    // swagger-initializer.js loads the spec from ./json, relative to /docs/.
    const spec = keep("/docs/json", await fetch(`${store.url}/docs/json`, { signal: AbortSignal.timeout(10_000) }));
    assert.equal(spec.status, 200);
    assert.equal(((await spec.json()) as { openapi?: string }).openapi, "3.1.0");
  });

  test("nosniff and a framing policy on every answer, public ones and refusals included", async () => {
    for (const path of [
      "/",
      "/products",
      "/products/1",
      "/products/abc",
      "/healthz",
      "/readyz",
      "/openapi.yaml",
      "/nope",
    ]) {
      keep(path, await fetch(`${store.url}${path}`, { signal: AbortSignal.timeout(10_000) }));
    }
    keep("401", await fetch(`${store.url}/users/me`, { signal: AbortSignal.timeout(10_000) }));
    keep(
      "415",
      await fetch(`${store.url}/users/login`, { method: "POST", body: "x", signal: AbortSignal.timeout(10_000) }),
    );
    keep("ShopService/ListProducts", await connectJson(store.url, "merch.shop.v1.ShopService/ListProducts", {}));
    assert.ok(seen.length > 20);
    for (const { what, headers } of seen) {
      assert.equal(headers.get("x-content-type-options"), "nosniff", `${what}: nosniff`);
      const framing =
        headers.get("x-frame-options") !== null || /frame-ancestors/.test(headers.get("content-security-policy") ?? "");
      assert.ok(framing, `${what}: X-Frame-Options or CSP frame-ancestors`);
      assert.ok(headers.get("content-security-policy"), `${what}: a CSP`);
    }
    // Requests Node's HTTP parser refuses are answered on the raw socket: still nosniff.
    const raw = parseRaw(
      await rawHttp(port(store.url), "GET /orders HTTP/1.1\r\nHost: x\r\nX-Bad: a\u0001b\r\nConnection: close\r\n\r\n"),
    );
    assert.equal(raw.status, 400);
    assert.equal(raw.headers.get("x-content-type-options"), "nosniff", "a parser refusal is nosniff too");
  });
});

type JsonResponse = Awaited<ReturnType<typeof connectJson>>;

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
    // Not one of those reached db-service: no failed login was counted against the account.
    const windows = await sql`SELECT key FROM throttle WHERE key = ${`login:account:${a.id}`}`;
    assert.equal(windows.length, 0);
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

// --- helpers

function port(url: string): number {
  return Number(new URL(url).port);
}

function manager(url: string): GuardedSessionManager {
  const m = new GuardedSessionManager(url);
  h2.push(m);
  return m;
}

async function listServices(transport: Transport): Promise<string[]> {
  const reflection = createClient(ServerReflection, transport);
  async function* ask() {
    yield { messageRequest: { case: "listServices" as const, value: "" } };
  }
  for await (const res of reflection.serverReflectionInfo(ask(), { timeoutMs: 10_000 })) {
    if (res.messageResponse.case === "listServicesResponse")
      return res.messageResponse.value.service.map((s) => s.name);
  }
  return [];
}

/** The TCP sockets a process listens on, from /proc (what `ss -ltnp` shows, without needing ss). */
function listeningSockets(pid: number): { address: string; port: number }[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target = "";
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    if (inode) inodes.add(inode);
  }
  const found: { address: string; port: number }[] = [];
  for (const [file, v6] of [
    ["/proc/net/tcp", false],
    ["/proc/net/tcp6", true],
  ] as const) {
    let table = "";
    try {
      table = readFileSync(file, "utf8");
    } catch {
      continue; // no IPv6 on this machine
    }
    for (const line of table.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // st 0A is LISTEN.
      if (f.length < 10 || f[3] !== "0A" || !inodes.has(f[9] ?? "")) continue;
      const [hex = "", portHex = ""] = (f[1] ?? "").split(":");
      found.push({ address: v6 ? ipv6(hex) : ipv4(hex), port: Number.parseInt(portHex, 16) });
    }
  }
  return found;
}

/** /proc/net/tcp writes an address as a little-endian 32-bit hex number. */
function ipv4(hex: string): string {
  const n = Number.parseInt(hex, 16);
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255].join(".");
}

/** Four little-endian 32-bit words; shown in full (e.g. "[0:0:0:0:0:0:0:1]"), never as 127.0.0.1. */
function ipv6(hex: string): string {
  const bytes: number[] = [];
  for (let w = 0; w < 4; w++) {
    const word = hex.slice(w * 8, w * 8 + 8);
    for (let b = 3; b >= 0; b--) bytes.push(Number.parseInt(word.slice(b * 2, b * 2 + 2), 16));
  }
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  return `[${groups.join(":")}]`;
}

/** How a TCP connection attempt ends: "connected", or the error's code. */
function connectOutcome(host: string, p: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host, port: p, timeout: 5000 });
    socket.once("connect", () => {
      socket.destroy();
      resolve("connected");
    });
    socket.once("timeout", () => {
      socket.destroy();
      resolve("timeout");
    });
    socket.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? String(err)));
  });
}
