import assert from "node:assert/strict";
import { createHash, randomInt, randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { type ApiResponse, client, startTestStore, TEST_JWT_SECRET, type TestStore } from "@merch/devstack";
import { ShopService } from "@merch/gen/merch/shop/v1/shop_pb";
import type { ChannelRecord } from "@merch/testkit";
import { freePort, rejectsWith, runService, type ServiceProcess } from "@merch/testkit";
import { exitWithin, waitForLogFile, waitForReady } from "./trust-support.ts";

// Login throttling through the gateway, against the real processes: counted atomically per
// account (by username or sid alike) and per client address, in PostgreSQL, so that two gateway
// processes share one count; the client address is what TRUST_PROXY lets the gateway believe and
// never what the client wrote; tokens work and stop on every gateway alike; and the audit events
// of failed and throttled logins name the address and a keyed hash, never the name or password.

const ACCOUNT_LIMIT = 5; // db-service's default LOGIN_MAX_FAILURES
const ADDRESS_LIMIT = 6;
const PASSWORD = "login tests password";

let store: TestStore;
/** Gateway A, the stack's: TRUST_PROXY=1 (one proxy hop in front). */
let urlA: string;
/** Gateway B, a second process against the same db-service and log-service, trusting a proxy by address. */
let gatewayB: ServiceProcess | undefined;
let urlB: string;
/** Every login name and password this file sends: none may appear in any log record. */
const secrets = new Set<string>();

before(async () => {
  store = await startTestStore({
    serviceEnv: {
      gateway: { TRUST_PROXY: "1" },
      "db-service": { LOGIN_ADDRESS_MAX_FAILURES: String(ADDRESS_LIMIT) },
    },
  });
  urlA = store.url;
  const port = await freePort();
  gatewayB = runService("gateway", port, gatewayEnv({ TRUST_PROXY: "127.0.0.1/32" }), "capture");
  urlB = gatewayB.url;
  await waitForReady(urlB, gatewayB);
});
after(async () => {
  await gatewayB?.stop();
  await store?.stop();
});

/** What a gateway needs to be one more replica of the stack's. */
function gatewayEnv(own: Record<string, string>): Record<string, string> {
  return {
    LOG_LEVEL: "info",
    DB_SERVICE_URL: store.stack.services["db-service"].url,
    LOG_SERVICE_URL: store.stack.services["log-service"].url,
    JWT_SECRET: TEST_JWT_SECRET,
    SERVICE_CREDENTIAL: store.stack.serviceCredential,
    SHUTDOWN_GRACE_MS: "1000",
    ...own,
  };
}

let n = 0;
let addresses = 0;
/** An address of its own for each call that is not about per-address limits. */
const freshAddress = () => {
  addresses++;
  return `10.${100 + ((addresses >> 16) & 63)}.${(addresses >> 8) & 255}.${addresses & 255}`;
};

interface Account {
  id: number;
  sid: string;
  username: string;
}

async function newAccount(prefix = "tl"): Promise<Account> {
  n++;
  const sid = `${prefix.toUpperCase()}${process.pid}x${n}`.slice(-15);
  const username = `${prefix}_${process.pid}_${n}`;
  secrets.add(sid).add(username);
  const res = await client(urlA)<{ id: number }>("POST", "/users/register", {
    body: { sid, username, email: `${sid.toLowerCase()}@example.com`, password: PASSWORD },
    headers: { "x-forwarded-for": freshAddress() },
  });
  assert.equal(res.status, 201, res.text);
  return { id: res.body.id, sid, username };
}

type LoginBody = { username: string; password: string } | { sid: string; password: string };

/** POST /users/login on a gateway, from the address X-Forwarded-For names (a fresh one by default). */
function login(
  url: string,
  body: LoginBody,
  opts: { forwardedFor?: string; requestId?: string } = {},
): Promise<ApiResponse<{ token: string; code: string }>> {
  secrets.add(body.password).add("username" in body ? body.username : body.sid);
  return client(url)("POST", "/users/login", {
    body,
    headers: {
      "x-forwarded-for": opts.forwardedFor ?? freshAddress(),
      ...(opts.requestId ? { "x-request-id": opts.requestId } : {}),
    },
  });
}

const wrong = () => `wrong guess ${randomUUID()}`;

function expectThrottled(res: ApiResponse, what: string) {
  assert.equal(res.status, 429, `${what}: ${res.text}`);
  assert.equal((res.body as { code: string }).code, "too_many_attempts", what);
  const retryAfter = Number(res.headers.get("retry-after"));
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `${what}: Retry-After ${res.headers.get("retry-after")}`);
}

function expectStatus(res: ApiResponse, status: number, what: string) {
  assert.equal(res.status, status, `${what}: ${res.text}`);
}

describe("per account", () => {
  test("40 parallel wrong logins: at most 5 are checked (401), the rest 429 with Retry-After; then the right password is 429", async () => {
    const a = await newAccount();
    const answers = await Promise.all(
      Array.from({ length: 40 }, () => login(urlA, { username: a.username, password: wrong() })),
    );
    const failed = answers.filter((r) => r.status === 401).length;
    assert.ok(failed >= 1 && failed <= ACCOUNT_LIMIT, `${failed} wrong passwords were checked`);
    for (const r of answers.filter((x) => x.status !== 401)) expectThrottled(r, "a parallel guess");
    expectThrottled(await login(urlA, { username: a.username, password: PASSWORD }), "the right password");
    expectThrottled(await login(urlA, { sid: a.sid, password: PASSWORD }), "the right password by sid");
  });

  test("username and sid, in any letter case, count as one account", async () => {
    const a = await newAccount();
    const names: LoginBody[] = [
      { username: a.username, password: wrong() },
      { sid: a.sid, password: wrong() },
      { username: a.username.toUpperCase(), password: wrong() },
      { sid: a.sid.toLowerCase(), password: wrong() },
      { username: a.username, password: wrong() },
    ];
    for (const body of names) expectStatus(await login(urlA, body), 401, JSON.stringify(body));
    expectThrottled(await login(urlA, { sid: a.sid, password: wrong() }), "the 6th failure");
    expectThrottled(await login(urlA, { sid: a.sid, password: PASSWORD }), "the right password by sid");
    expectThrottled(await login(urlA, { username: a.username, password: PASSWORD }), "the right password by username");
    // ShopService shares the count: RESOURCE_EXHAUSTED.
    const shop = createClient(ShopService, createConnectTransport({ baseUrl: urlA, httpVersion: "1.1" }));
    await rejectsWith(
      shop.login(
        { login: { case: "username", value: a.username }, password: PASSWORD },
        { headers: { "x-forwarded-for": freshAddress() } },
      ),
      Code.ResourceExhausted,
      "too_many_attempts",
    );
  });
});

describe("per client address", () => {
  test("failures from one address across usernames reach its limit: the right password is 429 there, fine elsewhere", async () => {
    const a = await newAccount();
    const b = await newAccount();
    const from = "10.66.0.1";
    const attempts: LoginBody[] = [
      { username: a.username, password: wrong() },
      { username: `nobody_${randomUUID().slice(0, 8)}`, password: wrong() },
      { sid: b.sid, password: wrong() },
      { username: `nobody_${randomUUID().slice(0, 8)}`, password: wrong() },
      { sid: `N${randomInt(1e9)}`, password: wrong() },
      { username: b.username, password: wrong() },
    ];
    assert.equal(attempts.length, ADDRESS_LIMIT);
    for (const body of attempts)
      expectStatus(await login(urlA, body, { forwardedFor: from }), 401, JSON.stringify(body));
    expectThrottled(
      await login(urlA, { username: a.username, password: PASSWORD }, { forwardedFor: from }),
      "from 10.66.0.1",
    );
    expectStatus(
      await login(urlA, { username: a.username, password: PASSWORD }, { forwardedFor: "10.66.0.2" }),
      200,
      "from 10.66.0.2",
    );
    // Gateway B sees the same address alike: the count is db-service's, not a gateway's.
    expectThrottled(await login(urlB, { username: b.username, password: PASSWORD }, { forwardedFor: from }), "via B");
  });

  test("X-Forwarded-For rotation: with TRUST_PROXY=1 the client's own entries are ignored", async () => {
    const a = await newAccount();
    const rotating = () => `${randomInt(1, 224)}.${randomInt(256)}.${randomInt(256)}.${randomInt(1, 255)}, 10.77.0.1`;
    for (let i = 0; i < ADDRESS_LIMIT; i++) {
      const body = { username: `nobody_${randomUUID().slice(0, 8)}`, password: wrong() };
      expectStatus(await login(urlA, body, { forwardedFor: rotating() }), 401, `attempt ${i + 1}`);
    }
    // Whatever the client writes on the left, the proxy's entry (the right-most) is the address.
    expectThrottled(
      await login(urlA, { username: a.username, password: PASSWORD }, { forwardedFor: rotating() }),
      "rotated",
    );
    expectThrottled(
      await login(urlA, { username: a.username, password: PASSWORD }, { forwardedFor: "10.77.0.1" }),
      "the address itself",
    );
    // Writing the throttled address on the left does not make one that address either.
    expectStatus(
      await login(urlA, { username: a.username, password: PASSWORD }, { forwardedFor: "10.77.0.1, 10.77.0.2" }),
      200,
      "from 10.77.0.2",
    );
  });

  test("X-Forwarded-For rotation: with TRUST_PROXY naming the proxy's address, the same", async () => {
    const a = await newAccount();
    const rotating = () => `${randomInt(1, 224)}.${randomInt(256)}.${randomInt(256)}.${randomInt(1, 255)}, 10.78.0.1`;
    for (let i = 0; i < ADDRESS_LIMIT; i++) {
      const body = { username: `nobody_${randomUUID().slice(0, 8)}`, password: wrong() };
      expectStatus(await login(urlB, body, { forwardedFor: rotating() }), 401, `attempt ${i + 1}`);
    }
    expectThrottled(
      await login(urlB, { username: a.username, password: PASSWORD }, { forwardedFor: rotating() }),
      "rotated",
    );
    expectStatus(
      await login(urlB, { username: a.username, password: PASSWORD }, { forwardedFor: "10.78.0.1, 10.78.0.2" }),
      200,
      "from 10.78.0.2",
    );
  });

  test("without TRUST_PROXY (npm start's default) X-Forwarded-For is nobody's word: the socket's address counts", async () => {
    const direct = runService("gateway", await freePort(), gatewayEnv({}), "capture");
    try {
      await waitForReady(direct.url, direct);
      const a = await newAccount();
      const first = `direct-${randomUUID()}`;
      for (let i = 0; i < ADDRESS_LIMIT; i++) {
        const body = { username: `nobody_${randomUUID().slice(0, 8)}`, password: wrong() };
        const opts = { forwardedFor: freshAddress(), ...(i === 0 ? { requestId: first } : {}) };
        expectStatus(await login(direct.url, body, opts), 401, `attempt ${i + 1}`);
      }
      expectThrottled(await login(direct.url, { username: a.username, password: PASSWORD }), "from 127.0.0.1");
      const records = await waitForLogFile(
        store.dataDir,
        (all) => all.some((r) => r.record.request_id === first && r.record.event === "user.login_failed"),
        "the first failure's audit event",
      );
      const event = records.find((r) => r.record.request_id === first && r.record.event === "user.login_failed");
      assert.equal(event?.record.attributes.client_address, "127.0.0.1");
    } finally {
      await direct.stop();
    }
  });

  test("TRUST_PROXY=true, or a CIDR of every address, is refused at start-up with a clear message", async () => {
    for (const value of ["true", "0.0.0.0/0", "::/0", "10.0.0.0/8, 0.0.0.0/0"]) {
      const gateway = runService("gateway", await freePort(), gatewayEnv({ TRUST_PROXY: value }), "capture");
      try {
        assert.equal(await exitWithin(gateway, 30_000), 2, `TRUST_PROXY=${value}:\n${gateway.output()}`);
      } finally {
        await gateway.stop("SIGKILL");
      }
      assert.match(gateway.output(), /TRUST_PROXY must be false, the number of proxies in front of the gateway/);
      assert.ok(gateway.output().includes(value), `the message names the value: ${gateway.output()}`);
    }
  });
});

describe("two gateway processes", () => {
  test("share one throttle: failures split across both, the 6th on either is 429", async () => {
    const a = await newAccount();
    for (const url of [urlA, urlB, urlA, urlB, urlA]) {
      expectStatus(await login(url, { username: a.username, password: wrong() }), 401, url);
    }
    expectThrottled(await login(urlB, { username: a.username, password: wrong() }), "the 6th, on B");
    expectThrottled(await login(urlA, { sid: a.sid, password: PASSWORD }), "the right password, on A");
    expectThrottled(await login(urlB, { sid: a.sid, password: PASSWORD }), "the right password, on B");

    // And in parallel: 20 guesses on each at once check at most 5 passwords between them.
    const c = await newAccount();
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, i) => login(i % 2 ? urlA : urlB, { username: c.username, password: wrong() })),
    );
    const failed = answers.filter((r) => r.status === 401).length;
    assert.ok(failed >= 1 && failed <= ACCOUNT_LIMIT, `${failed} wrong passwords were checked`);
    for (const r of answers.filter((x) => x.status !== 401)) expectThrottled(r, "a parallel guess");
  });

  test("a token from A works on B, and logout on A stops it on B at once (both had used it just before)", async () => {
    const a = await newAccount();
    const token = (await login(urlA, { username: a.username, password: PASSWORD })).body.token;
    const shopB = createClient(ShopService, createConnectTransport({ baseUrl: urlB, httpVersion: "1.1" }));
    const auth = { headers: { authorization: `Bearer ${token}` } };
    for (const url of [urlA, urlB]) {
      const me = await client(url)<{ id: number }>("GET", "/users/me", { token });
      assert.equal(me.body.id, a.id, url);
    }
    assert.equal((await shopB.getMe({}, auth)).user?.id, a.id);
    expectStatus(await client(urlA)("POST", "/users/logout", { token }), 204, "logout on A");
    for (const url of [urlB, urlA]) {
      const res = await client(url)<{ code: string }>("GET", "/users/me", { token });
      assert.equal(res.status, 401, url);
      assert.equal(res.body.code, "invalid_token", url);
    }
    await rejectsWith(shopB.getMe({}, auth), Code.Unauthenticated, "invalid_token");
  });

  test("a password change on B ends the account's tokens on A at once", async () => {
    const a = await newAccount();
    const fromA = (await login(urlA, { sid: a.sid, password: PASSWORD })).body.token;
    const fromB = (await login(urlB, { sid: a.sid, password: PASSWORD })).body.token;
    for (const url of [urlA, urlB]) {
      for (const token of [fromA, fromB]) expectStatus(await client(url)("GET", "/orders", { token }), 200, url);
    }
    const changed = await client(urlB)("PATCH", "/users/me", {
      token: fromB,
      body: { password: "a changed password", current_password: PASSWORD },
    });
    secrets.add("a changed password");
    expectStatus(changed, 200, "password change on B");
    for (const url of [urlA, urlB]) {
      for (const token of [fromA, fromB]) expectStatus(await client(url)("GET", "/orders", { token }), 401, url);
    }
  });
});

describe("audit", () => {
  test("login_failed and login_throttled carry the client address and a keyed hash of the name, never the name or password", async () => {
    const a = await newAccount("audit");
    const unknown = `ghost_${process.pid}_${randomUUID().slice(0, 8)}`;
    const shop = createClient(ShopService, createConnectTransport({ baseUrl: urlA, httpVersion: "1.1" }));
    // Each attempt gets its own request id, so that its event can be told apart.
    const attempts: { requestId: string; address: string; name: string; kind: string; status: number }[] = [];
    const attempt = async (body: LoginBody, status: number) => {
      const requestId = `audit-${randomUUID()}`;
      const address = freshAddress();
      const res = await login(urlA, body, { forwardedFor: `203.0.113.7, ${address}`, requestId });
      expectStatus(res, status, JSON.stringify(body));
      const [kind, name] = "username" in body ? ["username", body.username] : ["sid", body.sid];
      attempts.push({ requestId, address, name, kind, status });
    };
    await attempt({ username: a.username, password: wrong() }, 401);
    await attempt({ username: a.username.toUpperCase(), password: wrong() }, 401);
    await attempt({ sid: a.sid, password: wrong() }, 401);
    await attempt({ username: unknown, password: wrong() }, 401);
    await attempt({ username: a.username, password: wrong() }, 401);
    await attempt({ username: a.username, password: wrong() }, 401);
    await attempt({ username: a.username, password: PASSWORD }, 429);
    // ShopService's Login is audited alike.
    const shopId = `audit-${randomUUID()}`;
    const shopAddress = freshAddress();
    const shopPassword = wrong();
    secrets.add(shopPassword);
    await rejectsWith(
      shop.login(
        { login: { case: "username", value: unknown }, password: shopPassword },
        { headers: { "x-forwarded-for": shopAddress, "x-request-id": shopId } },
      ),
      Code.Unauthenticated,
      "invalid_credentials",
    );
    attempts.push({ requestId: shopId, address: shopAddress, name: unknown, kind: "username", status: 401 });

    const ids = new Set(attempts.map((x) => x.requestId));
    const isAudit = (r: ChannelRecord) =>
      r.record.event.startsWith("user.login_") && ids.has(r.record.request_id ?? "");
    const records = await waitForLogFile(
      store.dataDir,
      (all) => all.filter(isAudit).length >= attempts.length,
      `the ${attempts.length} audit events`,
    );
    const hashOf = new Map<string, string>();
    for (const x of attempts) {
      const events = records.filter((r) => isAudit(r) && r.record.request_id === x.requestId);
      assert.equal(events.length, 1, `one event for ${x.requestId}: ${events.map((e) => e.raw).join("\n")}`);
      const { record } = events[0] as ChannelRecord;
      assert.equal(
        record.event,
        x.status === 429 ? "user.login_throttled" : "user.login_failed",
        JSON.stringify(record),
      );
      assert.equal(record.level, "warn");
      assert.equal(record.attributes.client_address, x.address, "the address TRUST_PROXY believes, not the client's");
      assert.equal(record.attributes.login_type, x.kind);
      const hash = record.attributes.login_hash ?? "";
      assert.match(hash, /^[0-9a-f]{32}$/);
      const key = x.name.toLowerCase();
      if (hashOf.has(key)) assert.equal(hash, hashOf.get(key), `the same name hashes alike: ${x.name}`);
      hashOf.set(key, hash);
    }
    // Three names (username, sid, unknown): three hashes, none of them a plain SHA-256 of the name.
    assert.equal(new Set(hashOf.values()).size, 3);
    for (const [name, hash] of hashOf) {
      assert.ok(!createHash("sha256").update(name).digest("hex").startsWith(hash), "the hash is keyed");
    }
  });

  test("no login name or password sent by this file appears in any record of log-channel", async () => {
    // Everything the gateways sent so far has arrived: the last request's event is in the file.
    const requestId = `last-${randomUUID()}`;
    await client(urlB)("GET", "/", { headers: { "x-request-id": requestId } });
    const records = await waitForLogFile(
      store.dataDir,
      (all) => all.some((r) => r.record.request_id === requestId),
      "the last request's event",
    );
    assert.ok(records.length > 100, `${records.length} records`);
    const lowered = [...secrets].map((s) => s.toLowerCase());
    for (const r of records) {
      const raw = r.raw.toLowerCase();
      for (const secret of lowered) assert.ok(!raw.includes(secret), `"${secret}" in ${r.raw}`);
    }
  });
});
