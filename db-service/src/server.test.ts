import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@merch/gen/grpc/health/v1/health_pb";
import { UserService } from "@merch/gen/merch/store/v1/user_pb";
import { sendServiceCredential } from "@merch/kit";
import type { TestPostgres } from "@merch/testkit";
import { freePort, REPO_ROOT, runService, type ServiceProcess, waitForOutput } from "@merch/testkit";
import { startMigratedPostgres } from "./test-support/index.ts";

// The real entrypoint, as `npm start` and the container run it.

const run = promisify(execFile);
const CREDENTIAL = "server-test-credential-0123456789abcdef0123456789";
const BUF = join(REPO_ROOT, "node_modules", ".bin", "buf");
let pg: TestPostgres;
let service: ServiceProcess;
let base: string;

before(async () => {
  pg = await startMigratedPostgres();
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  service = runService(
    "db-service",
    port,
    { DATABASE_URL: pg.url, SERVICE_CREDENTIAL: CREDENTIAL, CORS_ORIGINS: "http://shop.example" },
    "capture",
  );
  await waitForOutput(service, /"database":"up"/);
});
after(async () => {
  service?.child.kill("SIGKILL");
  await pg?.destroy();
});

test("an invalid environment stops start-up with every problem named, exit code 2", async () => {
  const bad = runService("db-service", undefined, { PORT: "http", DB_POOL_MAX: "0", DATABASE_URL: "" }, "capture");
  assert.equal(await bad.exited(), 2);
  assert.match(bad.output(), /PORT must be an integer from 0 to 65535, got \\"http\\"/);
  assert.match(bad.output(), /DB_POOL_MAX must be an integer from 1 to 100/);
  assert.match(bad.output(), /DATABASE_URL is required/);
});

test("in production a missing or short service credential stops start-up", async () => {
  for (const [credential, message] of [
    [undefined, /SERVICE_CREDENTIAL is required in production/],
    ["too-short", /SERVICE_CREDENTIAL must be at least 32 characters, got 9/],
  ] as const) {
    const env = {
      NODE_ENV: "production",
      DATABASE_URL: pg.url,
      ...(credential ? { SERVICE_CREDENTIAL: credential } : {}),
    };
    const bad = runService("db-service", undefined, { PORT: "0", ...env }, "capture");
    assert.equal(await bad.exited(), 2);
    assert.match(bad.output(), message);
  }
});

test("gRPC health reports SERVING for the server and each service", async () => {
  const health = createClient(Health, createGrpcTransport({ baseUrl: base }));
  for (const name of [
    "",
    "merch.store.v1.ProductService",
    "merch.store.v1.UserService",
    "merch.store.v1.OrderService",
  ]) {
    assert.equal((await health.check({ service: name })).status, Status.SERVING, name);
  }
  const { statuses } = await health.list({});
  assert.ok(Object.keys(statuses).includes("merch.store.v1.OrderService"));
});

test("reflection v1 and v1alpha serve buf curl with no local protos, over gRPC, gRPC-Web and Connect", async () => {
  const services = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "merch.store.v1.CatalogueService",
    "merch.store.v1.OrderService",
    "merch.store.v1.ProductService",
    "merch.store.v1.UserService",
  ];
  for (const reflect of ["grpc-v1", "grpc-v1alpha"]) {
    const { stdout } = await run(BUF, [
      "curl",
      "--http2-prior-knowledge",
      "--protocol",
      "grpc",
      "--reflect-protocol",
      reflect,
      "--list-services",
      base,
    ]);
    assert.deepEqual(stdout.trim().split("\n"), services, reflect);
  }
  for (const protocol of ["grpc", "grpcweb", "connect"]) {
    const { stdout } = await run(BUF, [
      "curl",
      "--http2-prior-knowledge",
      "--protocol",
      protocol,
      "-d",
      '{"id": 1}',
      `${base}/merch.store.v1.ProductService/GetProduct`,
    ]);
    const { product } = JSON.parse(stdout) as { product: { name: string; price: string } };
    assert.deepEqual([product.name, product.price], ["SUSTech Hoodie", "49.99"], protocol);
  }
});

test("plain HTTP/1.1 JSON works, as with curl", async () => {
  const res = await fetch(`${base}/merch.store.v1.ProductService/ListProducts`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { products: { price: string }[] };
  assert.deepEqual(
    body.products.map((p) => p.price),
    ["49.99", "19.99", "9.99"],
  );
  const bad = await fetch(`${base}/merch.store.v1.ProductService/GetProduct`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: '{"id": -1}',
  });
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { code: string }).code, "invalid_argument");
});

test("browsers never call db-service: no CORS answer, whatever CORS_ORIGINS says", async () => {
  const preflight = await fetch(`${base}/merch.store.v1.ProductService/ListProducts`, {
    method: "OPTIONS",
    headers: {
      origin: "http://shop.example",
      "access-control-request-method": "POST",
      "access-control-request-headers": "content-type,connect-protocol-version",
    },
  });
  assert.equal(preflight.headers.get("access-control-allow-origin"), null);
});

test("user and order calls need the service credential, with buf curl as with any client; refusals are logged", async () => {
  const url = `${base}/merch.store.v1.UserService/AuthenticateUser`;
  const body = '{"username": "nobody", "password": "whatever"}';
  const refused = await run(BUF, ["curl", "--protocol", "connect", "-d", body, url]).catch(
    (err: { stderr: string }) => err.stderr,
  );
  assert.match(String(refused), /unauthenticated/);
  const { stdout } = await run(BUF, [
    "curl",
    "--protocol",
    "connect",
    "-H",
    `x-service-credential: ${CREDENTIAL}`,
    "-d",
    body,
    url,
  ]).catch((err: { stdout: string; stderr: string }) => ({ stdout: err.stdout + err.stderr }));
  assert.match(stdout, /invalid_credentials/, "with the credential the call is made (and fails as a login)");
  await waitForOutput(
    service,
    /refused a call without the service credential.*|"procedure":"merch\.store\.v1\.UserService\/AuthenticateUser"/,
  );
  assert.doesNotMatch(service.output(), new RegExp(CREDENTIAL), "the credential is never logged");
});

test("SIGTERM lets in-flight calls finish, then exits 0", async () => {
  const users = createClient(
    UserService,
    createGrpcTransport({ baseUrl: base, interceptors: [sendServiceCredential(CREDENTIAL)] }),
  );
  // Each registration hashes with argon2id, so a batch keeps the server busy for a while.
  const calls = Array.from({ length: 12 }, (_, n) =>
    users.registerUser({
      sid: `S${n}`,
      username: `leaver_${n}`,
      email: `leaver${n}@example.com`,
      password: "long enough!",
    }),
  );
  await new Promise((r) => setTimeout(r, 150));
  service.child.kill("SIGTERM");
  const results = await Promise.allSettled(calls);
  assert.deepEqual(
    results.map((r) => r.status),
    results.map(() => "fulfilled"),
    results.map((r) => (r.status === "rejected" ? String(r.reason) : "")).join(" "),
  );
  assert.equal(await service.exited(), 0);
  assert.match(service.output(), /"msg":"stopped"/);
});
