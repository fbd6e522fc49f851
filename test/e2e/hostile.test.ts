import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import { after, before, test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { startTestStore, type TestStore } from "@merch/devstack";
import { LoginRequestSchema, PlaceOrderRequestSchema } from "@merch/gen/merch/shop/v1/shop_pb";

// One hostile corpus through every door of the real store: REST, Connect JSON, Connect binary
// and gRPC-Web. Oversized bodies (declared and streamed, one and many at once), deep nesting,
// unknown fields, wrong types, bad tokens, long path parameters and traversal paths. No answer
// may be a 5xx, no service may die, every one must be ready afterwards; the gateway's peak RSS
// is reported.

let store: TestStore;
let port: number;

before(async () => {
  store = await startTestStore();
  port = Number(new URL(store.url).port);
});
after(() => store?.stop());

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * One request on its own connection, written as an attacker writes it: the head, then the body
 * in chunks, whatever the server says meanwhile (a refusal may come before the body is sent).
 */
function raw(head: string, body: Buffer | Buffer[] = [], timeoutMs = 30_000): Promise<RawAnswer> {
  const chunks = Array.isArray(body) ? body : [body];
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const got: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer in ${timeoutMs} ms to ${head.split("\r\n")[0]}`));
    }, timeoutMs);
    socket.on("connect", async () => {
      socket.write(head);
      for (const chunk of chunks) {
        if (socket.destroyed || socket.writableEnded) break;
        if (!socket.write(chunk)) await new Promise((r) => socket.once("drain", r).once("close", r));
      }
    });
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const text = Buffer.concat(got).toString("latin1");
      const [headText = "", ...rest] = text.split("\r\n\r\n");
      const [statusLine = "", ...lines] = headText.split("\r\n");
      const status = Number(statusLine.split(" ")[1]);
      if (!Number.isInteger(status)) return reject(new Error(`no HTTP answer to ${head.split("\r\n")[0]}: ${text}`));
      const headers = Object.fromEntries(
        lines.map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]),
      );
      resolve({ status, headers, body: rest.join("\r\n\r\n") });
    };
    // The answer is complete once its Content-Length has arrived: the client stops there, as
    // one still writing a body it no longer needs to send would.
    socket.on("data", (d) => {
      got.push(d);
      const text = Buffer.concat(got);
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) return;
      const length = /\r\ncontent-length:\s*(\d+)/i.exec(text.subarray(0, end).toString("latin1"))?.[1];
      if (length !== undefined && text.length >= end + 4 + Number(length)) finish();
      if (length === undefined && text.subarray(-5).toString("latin1") === "0\r\n\r\n") finish();
    });
    socket.on("error", () => {}); // a refusal may reset what is still being written
    socket.on("close", finish);
  });
}

type Door = "rest" | "connect-json" | "connect-proto" | "grpc-web";
const DOORS: Door[] = ["rest", "connect-json", "connect-proto", "grpc-web"];

const CONTENT_TYPE: Record<Door, string> = {
  rest: "application/json",
  "connect-json": "application/json",
  "connect-proto": "application/proto",
  "grpc-web": "application/grpc-web+proto",
};

function path(door: Door, rest: string, rpc: string): string {
  return door === "rest" ? rest : `/merch.shop.v1.ShopService/${rpc}`;
}

function head(method: string, url: string, headers: Record<string, string | number>): string {
  const lines = Object.entries({ host: "127.0.0.1", ...headers }).map(([k, v]) => `${k}: ${v}`);
  return `${method} ${url} HTTP/1.1\r\n${lines.join("\r\n")}\r\n\r\n`;
}

function envelope(message: Uint8Array): Buffer {
  const h = Buffer.alloc(5);
  h.writeUInt32BE(message.length, 1);
  return Buffer.concat([h, message]);
}

/** A body for the door: JSON text as it is, binary as the door frames it. */
function frame(door: Door, bytes: Buffer): Buffer {
  return door === "grpc-web" ? envelope(bytes) : bytes;
}

/** The error an answer carries, whatever door gave it: REST's problem code, or the Connect/gRPC-Web code. */
function refusal(door: Door, a: RawAnswer): string {
  if (door === "rest") {
    assert.match(a.headers["content-type"] ?? "", /^application\/problem\+json/, `REST refusal ${a.status}: ${a.body}`);
    return String((JSON.parse(a.body) as { code: string }).code);
  }
  if (door === "grpc-web") {
    const status = a.headers["grpc-status"] ?? /grpc-status:\s*(\d+)/.exec(a.body)?.[1];
    return `grpc-status ${status}`;
  }
  return String((JSON.parse(a.body) as { code: string }).code);
}

const OVERSIZED: Record<Door, string> = {
  rest: "payload_too_large",
  "connect-json": "resource_exhausted",
  "connect-proto": "resource_exhausted",
  "grpc-web": "grpc-status 8",
};
const INVALID: Record<Door, string> = {
  rest: "validation_failed",
  "connect-json": "invalid_argument",
  "connect-proto": "invalid_argument",
  "grpc-web": "grpc-status 3",
};

const answers: { what: string; status: number }[] = [];
function record(what: string, a: RawAnswer): RawAnswer {
  answers.push({ what, status: a.status });
  assert.ok(a.status < 500, `${what}: ${a.status} ${a.body}`);
  return a;
}

/** 12 MB of nested JSON objects, the body that once took the gateway's heap. */
const NESTED_12MB = Buffer.from(`${'{"a":'.repeat(2_000_000)}1${"}".repeat(2_000_000)}`);

test("an oversized body is refused on every door, declared or streamed, before it is read", async () => {
  for (const door of DOORS) {
    const url = path(door, "/users/login", "Login");
    // Declared: the whole 12 MB are sent, but the answer must not wait for them to be buffered.
    const declared = record(
      `${door} declared 12 MB`,
      await raw(head("POST", url, { "content-type": CONTENT_TYPE[door], "content-length": NESTED_12MB.length }), [
        NESTED_12MB,
      ]),
    );
    assert.equal(refusal(door, declared), OVERSIZED[door], `${door} declared: ${declared.body}`);
    // Streamed: no length, chunked; refused once it passes the limit.
    const chunk = Buffer.alloc(16 * 1024, 0x20);
    const chunks = Array.from({ length: 64 }, () => Buffer.from(`${chunk.length.toString(16)}\r\n${chunk}\r\n`));
    const streamed = record(
      `${door} streamed 1 MB`,
      await raw(head("POST", url, { "content-type": CONTENT_TYPE[door], "transfer-encoding": "chunked" }), chunks),
    );
    assert.equal(refusal(door, streamed), OVERSIZED[door], `${door} streamed: ${streamed.body}`);
    // The connection stays open while the rest is dropped: a server that closes it with the
    // client still sending gets it reset, and the reset may destroy the answer before it is read.
    assert.notEqual(streamed.headers.connection, "close", `${door} streamed: the answer closes the connection`);
  }
});

test("two hundred oversized bodies at once leave the gateway standing", async () => {
  const body = Buffer.alloc(1024 * 1024, 0x5b); // 1 MB of "["
  const all = await Promise.all(
    Array.from({ length: 200 }, (_, i) => {
      const door = DOORS[i % DOORS.length] as Door;
      return raw(
        head("POST", path(door, "/orders", "PlaceOrder"), {
          "content-type": CONTENT_TYPE[door],
          "content-length": body.length,
        }),
        body,
      ).then((a) => ({ door, a }));
    }),
  );
  for (const { door, a } of all) {
    record(`${door} 1 MB of 200`, a);
    assert.ok([OVERSIZED[door], door === "rest" ? "service_unavailable" : ""].includes(refusal(door, a)), a.body);
  }
});

test("deep nesting, unknown fields and wrong types are refused as invalid arguments on every door", async () => {
  const jsonDoors: Door[] = ["rest", "connect-json"];
  const cases: [string, string][] = [
    ["nested", `{"username":"a","password":"b","x":${"[".repeat(30_000)}${"]".repeat(30_000)}}`],
    ["unknown field", '{"username":"alice","password":"whatever pw","pad":"x"}'],
    [
      "nested unknown field",
      `{"username":"alice","password":"whatever pw","pad":${'{"a":'.repeat(20)}1${"}".repeat(20)}}`,
    ],
    ["wrong types", '{"username":5,"password":["x"]}'],
    ["not an object", "[1,2,3]"],
    ["not JSON", "{username: alice"],
  ];
  for (const door of jsonDoors) {
    for (const [what, text] of cases) {
      const body = Buffer.from(text);
      const a = record(
        `${door} ${what}`,
        await raw(
          head("POST", path(door, "/users/login", "Login"), {
            "content-type": "application/json",
            "content-length": body.length,
          }),
          body,
        ),
      );
      const code = refusal(door, a);
      assert.ok(
        door === "rest" ? ["validation_failed", "malformed_json"].includes(code) : code === "invalid_argument",
        `${door} ${what}: ${a.status} ${a.body}`,
      );
      if (what === "unknown field") {
        const parsed = JSON.parse(a.body) as { errors?: { field: string }[]; details?: { type: string }[] };
        if (door === "rest")
          assert.ok(
            parsed.errors?.some((e) => e.field.includes("pad")),
            a.body,
          );
        else
          assert.ok(
            parsed.details?.some((d) => d.type === "google.rpc.BadRequest"),
            a.body,
          );
      }
    }
  }
  // Binary: a field number LoginRequest does not have (99, varint 1), and the wrong wire type for username.
  const login = toBinary(
    LoginRequestSchema,
    create(LoginRequestSchema, { login: { case: "username", value: "alice" }, password: "whatever pw" }),
  );
  const unknown = Buffer.concat([Buffer.from(login), Buffer.from([0x98, 0x06, 0x01])]);
  const wrongType = Buffer.from([0x08, 0x05]); // field 1 (a string) as a varint
  for (const door of ["connect-proto", "grpc-web"] as Door[]) {
    for (const [what, bytes] of [
      ["unknown field", unknown],
      ["wrong wire type", wrongType],
    ] as const) {
      const body = frame(door, bytes);
      const a = record(
        `${door} ${what}`,
        await raw(
          head("POST", path(door, "", "Login"), { "content-type": CONTENT_TYPE[door], "content-length": body.length }),
          body,
        ),
      );
      assert.equal(
        refusal(door, a),
        INVALID[door],
        `${door} ${what}: ${a.status} ${JSON.stringify(a.headers)} ${a.body}`,
      );
    }
  }
});

test("bad tokens are unauthenticated on every door", async () => {
  const order = toBinary(PlaceOrderRequestSchema, create(PlaceOrderRequestSchema, { productId: 1, quantity: 1 }));
  for (const token of ["garbage", "a.b.c", `${"e".repeat(40)}.${"e".repeat(40)}.x`, ""]) {
    for (const door of DOORS) {
      const body =
        door === "rest" || door === "connect-json"
          ? Buffer.from(
              '{"product_id":1,"quantity":1}'.replace("product_id", door === "rest" ? "product_id" : "productId"),
            )
          : frame(door, Buffer.from(order));
      const a = record(
        `${door} token ${token.slice(0, 8)}`,
        await raw(
          head("POST", path(door, "/orders", "PlaceOrder"), {
            "content-type": CONTENT_TYPE[door],
            "content-length": body.length,
            authorization: `Bearer ${token}`,
          }),
          body,
        ),
      );
      const code = refusal(door, a);
      assert.ok(
        door === "rest"
          ? ["invalid_token", "authentication_required"].includes(code)
          : ["unauthenticated", "grpc-status 16"].includes(code),
        `${door} token ${token}: ${a.status} ${a.body}`,
      );
    }
  }
});

test("long parameters and traversal paths are problem details, never a 500", async () => {
  const paths = [
    `/products/${"x".repeat(150)}`,
    `/products/${"x".repeat(3000)}`,
    `/orders/${"x".repeat(500)}/cancel`,
    `/orders/${"x".repeat(3000)}/cancel`,
    "/docs/static/%2e%2e/%2e%2e/package.json",
    "/docs/static/../../package.json",
    "/docs/static/%2e%2e%2f%2e%2e%2fpackage.json",
    "/docs/static/..%2f..%2fpackage.json",
    "/docs/static/%252e%252e/package.json",
    "/docs/static/%00",
    "/docs/static/%",
    "/shop/%2e%2e/%2e%2e/package.json",
    "/shop/..%2f..%2fpackage.json",
    "/%2e%2e/%2e%2e/etc/passwd",
    `/merch.shop.v1.ShopService/${"x".repeat(3000)}`,
  ];
  for (const p of paths) {
    for (const method of ["GET", "POST"]) {
      const a = record(`${method} ${p.slice(0, 60)}`, await raw(head(method, p, { "content-length": 0 })));
      assert.ok(a.status >= 400, `${method} ${p}: ${a.status}`);
      if (!p.startsWith("/merch.shop")) {
        assert.match(a.headers["content-type"] ?? "", /^application\/problem\+json/, `${method} ${p}: ${a.body}`);
      }
      assert.doesNotMatch(a.body, /"name"\s*:\s*"@merch|"workspaces"/, `${method} ${p} served a package.json`);
    }
  }
});

test("afterwards every service is running and ready; the gateway's peak RSS is reported", async () => {
  for (const [name, service] of Object.entries(store.stack.services)) {
    assert.equal(service.child.exitCode, null, `${name} exited`);
    assert.equal(service.child.signalCode, null, `${name} was killed`);
  }
  const ready = await fetch(`${store.url}/readyz`, { signal: AbortSignal.timeout(5000) });
  assert.equal(ready.status, 200, await ready.text());
  const pid = store.stack.services.gateway.child.pid;
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const peakKb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]);
  assert.ok(peakKb > 0);
  const fives = answers.filter((a) => a.status >= 500);
  assert.deepEqual(fives, []);
  console.log(`hostile corpus: ${answers.length} answers, 0 × 5xx; gateway peak RSS ${(peakKb / 1024).toFixed(0)} MB`);
});
