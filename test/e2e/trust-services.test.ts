import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { connect } from "node:net";
import { networkInterfaces } from "node:os";
import { after, before, describe, test } from "node:test";
import { Code, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "@merch/gen/grpc/health/v1/health_pb";
import { ServerReflection } from "@merch/gen/grpc/reflection/v1/reflection_pb";
import { LogLevel, LogService } from "@merch/gen/merch/log/v1/log_pb";
import { OrderService } from "@merch/gen/merch/store/v1/order_pb";
import { UserService } from "@merch/gen/merch/store/v1/user_pb";
import { GuardedSessionManager } from "@merch/kit";
import { rejectsWith } from "@merch/testkit";
import { type Account, api, newAccount, placeOrder, snapshot, store, useTrustStore } from "./trust-store.ts";
import { connectJson, connectStreamJson, logLines, sessionIdOf, waitForLogFile } from "./trust-support.ts";

// The trust boundary of the store, proved against the real processes (one of the trust-*.test.ts
// files; trust-login.test.ts has login throttling and the audit of failed logins). db-service and
// log-service act only for callers holding the store's credential, and listen on loopback only.

useTrustStore();

/** HTTP/2 sessions to the internal services, closed in \`after\` so that none keeps the process alive. */
const h2: GuardedSessionManager[] = [];
after(() => {
  for (const m of h2) m.abort();
});

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

// --- helpers

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
