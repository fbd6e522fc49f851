import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { REPO_ROOT } from "@merch/devstack/paths";
import { freePort } from "@merch/devstack/ports";
import { startTestPostgres, type TestPostgres } from "@merch/devstack/postgres";
import { runService, type ServiceProcess, waitForOutput } from "@merch/devstack/services";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@merch/gen/grpc/health/v1/health_pb";
import { UserService } from "@merch/gen/merch/store/v1/user_pb";

// The real entrypoint, as `npm start` and the container run it.

const run = promisify(execFile);
const BUF = join(REPO_ROOT, "node_modules", ".bin", "buf");
let pg: TestPostgres;
let service: ServiceProcess;
let base: string;

before(async () => {
  pg = await startTestPostgres();
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  service = runService("db-service", port, { DATABASE_URL: pg.url, CORS_ORIGINS: "http://shop.example" }, "capture");
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

test("CORS answers preflights for configured origins only", async () => {
  const url = `${base}/merch.store.v1.ProductService/ListProducts`;
  const preflight = (origin: string) =>
    fetch(url, {
      method: "OPTIONS",
      headers: {
        origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,connect-protocol-version",
      },
    });
  const allowed = await preflight("http://shop.example");
  assert.equal(allowed.status, 204);
  assert.equal(allowed.headers.get("access-control-allow-origin"), "http://shop.example");
  assert.match(allowed.headers.get("access-control-allow-headers") ?? "", /Connect-Protocol-Version/);
  const foreign = await preflight("http://evil.example");
  assert.equal(foreign.headers.get("access-control-allow-origin"), null);
});

test("SIGTERM lets in-flight calls finish, then exits 0", async () => {
  const users = createClient(UserService, createGrpcTransport({ baseUrl: base }));
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
