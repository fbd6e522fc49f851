import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { connect } from "node:net";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs, timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createRouterTransport, type ServiceImpl } from "@connectrpc/connect";
import { ErrorInfoSchema } from "@merch/gen/google/rpc/error_details_pb";
import { Health, HealthCheckResponse_ServingStatus } from "@merch/gen/grpc/health/v1/health_pb";
import { type LogEvent, LogService } from "@merch/gen/merch/log/v1/log_pb";
import { OrderSchema, OrderService, OrderStatus } from "@merch/gen/merch/store/v1/order_pb";
import { ProductSchema, ProductService } from "@merch/gen/merch/store/v1/product_pb";
import { UserSchema, UserService } from "@merch/gen/merch/store/v1/user_pb";
import {
  ANSWERS,
  carryRefusal,
  createLogger,
  type Reason,
  reasonByName,
  reasonName,
  reasonOf,
  rpcError,
} from "@merch/kit";
import { buildGateway, type Gateway } from "./app.ts";
import { loadConfig } from "./config.ts";
import { problemCodes } from "./spec.ts";

// The gateway alone, its db-service and log-service replaced by in-memory routers
// (createRouterTransport): the REST and ShopService doors, their error mapping, and the HTTP
// server's own refusals. test/e2e proves the same contract against the real services.

const hoodie = create(ProductSchema, {
  id: 1,
  name: "SUSTech Hoodie",
  price: "49.99",
  stock: 500,
  category: "Apparel",
  createdAt: timestampFromMs(1_700_000_000_000),
});
const alice = create(UserSchema, {
  id: 7,
  sid: "12110001",
  username: "alice",
  email: "a@b.cn",
  isActive: true,
  createdAt: timestampFromMs(1_700_000_000_000),
});
const SESSION = randomUUID();

/** What the fake db-service's PlaceOrder does next: answer, or fail with this. */
let placeOrderFails: Error | undefined;
let placeOrderDelayMs = 0;
const events: LogEvent[] = [];

const products: ServiceImpl<typeof ProductService> = {
  listProducts: () => ({ products: [hoodie] }),
  getProduct: (req) => {
    if (req.id !== 1) throw rpcError(reasonByName("product_not_found") as Reason, "no such product");
    return { product: hoodie };
  },
  async *watchProducts() {
    yield { products: [hoodie], snapshot: true };
  },
};
const users: Partial<ServiceImpl<typeof UserService>> = {
  authenticateUser: (req) => {
    if (req.password !== "right password") throw rpcError(reasonByName("invalid_credentials") as Reason, "no");
    return { user: alice, sessionId: SESSION, sessionExpiresAt: timestampFromMs(Date.now() + 86_400_000) };
  },
  getUser: () => ({ user: alice }),
};
const orders: Partial<ServiceImpl<typeof OrderService>> = {
  async placeOrder(req) {
    if (placeOrderDelayMs > 0) await new Promise((r) => setTimeout(r, placeOrderDelayMs));
    if (placeOrderFails) throw placeOrderFails;
    const order = create(OrderSchema, {
      id: 11,
      userId: req.session?.userId ?? 0,
      productId: req.productId,
      quantity: req.quantity,
      unitPrice: "49.99",
      totalPrice: "99.98",
      status: OrderStatus.PLACED,
      createdAt: timestampNow(),
    });
    return { order, replayed: false, product: { ...hoodie, stock: hoodie.stock - req.quantity } };
  },
  // As db-service does: each order answered on its own, a refusal carried in its result; a
  // failure of the call itself (a lost stream, a refused connection) fails the whole batch.
  async placeOrders(req, ctx) {
    if (placeOrderFails instanceof ConnectError && reasonOf(placeOrderFails) === undefined) throw placeOrderFails;
    const place = orders.placeOrder as NonNullable<typeof orders.placeOrder>;
    const results = await Promise.all(
      req.orders.map((o) =>
        Promise.resolve(place(o, ctx)).then(
          (placed) => ({ result: { case: "placed" as const, value: placed } }),
          (err: unknown) => ({ result: { case: "refused" as const, value: carryRefusal(ConnectError.from(err)) } }),
        ),
      ),
    );
    return { results };
  },
};
const serving = { check: () => ({ status: HealthCheckResponse_ServingStatus.SERVING }) };

let gateway: Gateway;
let base: string;
before(async () => {
  const config = loadConfig({
    JWT_SECRET: "app-test-secret-0123456789abcdef0123456789",
    HTTP_HEADERS_TIMEOUT_MS: "1000",
    HTTP_REQUEST_TIMEOUT_MS: "2000",
    SHUTDOWN_GRACE_MS: "1500",
    CORS_ORIGINS: "http://shop.example",
    // Every idle connection detached from the HTTP server after each answer and attached again
    // with its next request (gateway/src/admission.ts): every test below goes through that path.
    HTTP_MAX_ATTACHED_CONNECTIONS: "0",
  });
  gateway = await buildGateway(config, createLogger("gateway", process.env.TEST_LOG_LEVEL ?? "silent"), {
    db: createRouterTransport((router) => {
      router.service(ProductService, products);
      router.service(UserService, users);
      router.service(OrderService, orders);
      router.service(Health, serving);
    }),
    log: createRouterTransport((router) => {
      router.service(LogService, {
        async streamLogs(requests) {
          let accepted = 0n;
          for await (const req of requests) {
            events.push(...req.events);
            accepted += BigInt(req.events.length);
          }
          return { accepted, rejected: 0n, rejections: [] };
        },
        writeLogs: (req) => ({ accepted: BigInt(req.events.length) }),
      });
      router.service(Health, serving);
    }),
    close() {},
  });
  await gateway.app.listen({ port: 0, host: "127.0.0.1" });
  const address = gateway.app.server.address();
  base = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
});
after(() => gateway?.close());

async function token(): Promise<string> {
  const res = await gateway.app.inject({
    method: "POST",
    url: "/users/login",
    payload: { username: "alice", password: "right password" },
  });
  assert.equal(res.statusCode, 200, res.body);
  return (res.json() as { token: string }).token;
}

/** A ShopService call in Connect JSON, as curl or a browser would make it. */
function shop(method: string, body: unknown, bearer?: string) {
  return gateway.app.inject({
    method: "POST",
    url: `/merch.shop.v1.ShopService/${method}`,
    headers: { "content-type": "application/json", ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
    payload: JSON.stringify(body),
  });
}

describe("one Store behind both doors", () => {
  test("REST and ShopService answer the same product", async () => {
    const rest = await gateway.app.inject({ method: "GET", url: "/products/1" });
    assert.equal(rest.statusCode, 200);
    const connect = await shop("GetProduct", { id: 1 });
    assert.equal(connect.statusCode, 200, connect.body);
    const a = rest.json() as { name: string; price: string; stock: number };
    const b = (connect.json() as { product: { name: string; price: string; stock: number } }).product;
    assert.deepEqual([b.name, b.price, b.stock], [a.name, a.price, a.stock]);
  });

  test("a token from REST login works on ShopService, and a ShopService order is the REST order", async () => {
    const bearer = await token();
    const me = await shop("GetMe", {}, bearer);
    assert.equal((me.json() as { user: { username: string } }).user.username, "alice");
    assert.equal(me.headers["cache-control"], "no-store");
    const placed = await shop("PlaceOrder", { productId: 1, quantity: 2 }, bearer);
    assert.equal(placed.statusCode, 200, placed.body);
    const order = (placed.json() as { order: { totalPrice: string; status: string } }).order;
    assert.deepEqual([order.totalPrice, order.status], ["99.98", "ORDER_STATUS_PLACED"]);
    // The product the write answered with is what the next read shows.
    const after = await gateway.app.inject({ method: "GET", url: "/products/1" });
    assert.equal((after.json() as { stock: number }).stock, 498);
  });

  test("ShopService refuses a call that needs a token without one, and validates before anything", async () => {
    const none = await shop("GetMe", {});
    assert.equal(none.statusCode, 401);
    assert.equal((none.json() as { code: string }).code, "unauthenticated");
    const bad = await shop("PlaceOrder", { productId: 1, quantity: 9 }, await token());
    assert.equal(bad.statusCode, 400);
    const details = JSON.stringify(bad.json());
    assert.match(details, /quantity/);
  });
});

describe("every refusal the same on both doors, from one table", () => {
  const publicReasons = problemCodes();

  test("the REST problem codes in openapi.yaml are exactly the public reasons of ErrorReason", () => {
    const fromProto = Object.entries(ANSWERS)
      .filter(([, a]) => !a.internal)
      .map(([r]) => reasonName(Number(r) as Reason))
      .sort();
    assert.deepEqual([...publicReasons].sort(), fromProto);
  });

  test("each reason db-service gives is answered with its status and code over REST, its Connect code and ErrorInfo over ShopService", async () => {
    const bearer = await token();
    for (const name of publicReasons) {
      const reason = reasonByName(name) as Reason;
      placeOrderFails = rpcError(reason, `refused: ${name}`);
      const rest = await gateway.app.inject({
        method: "POST",
        url: "/orders",
        headers: { authorization: `Bearer ${bearer}` },
        payload: { product_id: 1, quantity: 1 },
      });
      assert.equal(rest.statusCode, ANSWERS[reason].status, `${name}: ${rest.body}`);
      assert.equal(rest.headers["content-type"], "application/problem+json; charset=utf-8");
      assert.equal((rest.json() as { code: string }).code, name);
      const connect = await shop("PlaceOrder", { productId: 1, quantity: 1 }, bearer);
      const body = connect.json() as { code: string; details?: { type: string; value: string }[] };
      assert.equal(
        body.code,
        Code[ANSWERS[reason].code].replace(/[A-Z]/g, (c, i) => (i ? "_" : "") + c.toLowerCase()),
        name,
      );
      const info = body.details?.find((d) => d.type === ErrorInfoSchema.typeName);
      assert.ok(info, `${name}: ErrorInfo attached`);
      assert.match(Buffer.from(info.value, "base64").toString(), new RegExp(name));
    }
    placeOrderFails = undefined;
  });

  test("a write whose answer was lost is outcome_unknown; a read is not", async () => {
    const bearer = await token();
    placeOrderFails = new ConnectError("the peer reset the stream", Code.Aborted);
    const lost = await gateway.app.inject({
      method: "POST",
      url: "/orders",
      headers: { authorization: `Bearer ${bearer}` },
      payload: { product_id: 1, quantity: 1 },
    });
    assert.equal(lost.statusCode, 504);
    assert.equal((lost.json() as { code: string }).code, "outcome_unknown");
    placeOrderFails = new ConnectError("connect ECONNREFUSED 127.0.0.1:50051", Code.Unavailable);
    const refused = await gateway.app.inject({
      method: "POST",
      url: "/orders",
      headers: { authorization: `Bearer ${bearer}` },
      payload: { product_id: 1, quantity: 1 },
    });
    assert.equal((refused.json() as { code: string }).code, "service_unavailable", "never sent: nothing happened");
    placeOrderFails = undefined;
  });
});

/** Sends raw bytes on a new connection and returns what the server answered when it closed. */
function raw(chunks: (string | Buffer)[], gapMs: number, deadlineMs = 10_000): Promise<{ answer: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const url = new URL(base);
    const socket = connect(Number(url.port), url.hostname);
    let answer = "";
    let timer: NodeJS.Timeout | undefined;
    const deadline = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the connection was still open after ${deadlineMs} ms: ${answer}`));
    }, deadlineMs);
    socket.on("data", (d: Buffer) => {
      answer += d.toString();
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(deadline);
      clearTimeout(timer);
      resolve({ answer, ms: Date.now() - started });
    });
    const next = (i: number) => {
      if (i >= chunks.length || socket.destroyed) return;
      socket.write(chunks[i] as string);
      timer = setTimeout(() => next(i + 1), gapMs);
    };
    socket.on("connect", () => next(0));
  });
}

function problemOf(answer: string): { status: number; code: string; type: string } {
  assert.match(answer, /content-type: application\/problem\+json/i, answer);
  return JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)) as { status: number; code: string; type: string };
}

describe("the HTTP server against slow and odd clients", () => {
  test("headers trickled forever (slowloris) are cut at the headers timeout with 408", async () => {
    const trickle = ["GET /products HTTP/1.1\r\n", ...Array.from({ length: 40 }, (_, i) => `X-Slow-${i}: 1\r\n`)];
    const { answer, ms } = await raw(trickle, 200);
    assert.ok(ms < 4000, `closed after ${ms} ms`);
    assert.equal(problemOf(answer).code, "request_timeout");
  });

  test("a body trickled a byte at a time is cut at the request timeout with 408", async () => {
    const head = `POST /users/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n`;
    const { answer, ms } = await raw([head, ...Array.from({ length: 50 }, () => "{")], 300);
    assert.ok(ms < 6000, `closed after ${ms} ms`);
    assert.equal(problemOf(answer).status, 408);
  });

  test("oversized headers are 431, a request line that is not HTTP 400, an over-long path 414: all problem+json", async () => {
    const huge = await raw([`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`], 0);
    assert.equal(problemOf(huge.answer).code, "headers_too_large");
    const garbage = await raw(["THIS IS NOT HTTP\r\n\r\n"], 0);
    assert.equal(problemOf(garbage.answer).code, "bad_request");
    const long = await fetch(`${base}/${"p".repeat(3000)}`);
    assert.equal(long.status, 414);
    assert.equal(((await long.json()) as { code: string }).code, "uri_too_long");
    const logged = events.filter((e) => e.event === "http.request").map((e) => e.http?.status);
    for (const status of [408, 431, 400, 414]) assert.ok(logged.includes(status), `a log event for ${status}`);
  });

  test("CORS preflights for REST and ShopService answer 204 with Connect's headers, for listed origins only", async () => {
    for (const path of ["/orders", "/merch.shop.v1.ShopService/PlaceOrder"]) {
      const res = await fetch(`${base}${path}`, {
        method: "OPTIONS",
        headers: {
          origin: "http://shop.example",
          "access-control-request-method": "POST",
          "access-control-request-headers": "authorization,content-type,connect-protocol-version",
        },
      });
      assert.equal(res.status, 204, path);
      assert.equal(res.headers.get("access-control-allow-origin"), "http://shop.example");
      assert.match(res.headers.get("access-control-allow-headers") ?? "", /Connect-Protocol-Version/i);
      assert.match(res.headers.get("access-control-allow-headers") ?? "", /Authorization/i);
    }
    const foreign = await fetch(`${base}/orders`, {
      method: "OPTIONS",
      headers: { origin: "http://evil.example", "access-control-request-method": "POST" },
    });
    assert.equal(foreign.headers.get("access-control-allow-origin"), null);
  });

  test("closing: requests in flight finish within SHUTDOWN_GRACE_MS, new ones on open connections get 503 shutting_down", async () => {
    const bearer = await token();
    placeOrderDelayMs = 500;
    const agent = { keepalive: true } as const;
    const inFlight = fetch(`${base}/orders`, {
      method: "POST",
      headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
      body: JSON.stringify({ product_id: 1, quantity: 1 }),
      ...agent,
    });
    await new Promise((r) => setTimeout(r, 100));
    const closing = gateway.close();
    const late = await gateway.app.inject({ method: "GET", url: "/products" });
    assert.equal(late.statusCode, 503);
    assert.equal((late.json() as { code: string }).code, "shutting_down");
    assert.equal((await inFlight).status, 201, "the order in flight was answered");
    const started = Date.now();
    await closing;
    assert.ok(Date.now() - started < 3000);
    placeOrderDelayMs = 0;
  });
});
