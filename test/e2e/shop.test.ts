import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { client, startTestStore, type TestStore } from "@merch/devstack";
import { ErrorInfoSchema } from "@merch/gen/google/rpc/error_details_pb";
import { OrderStatus, ShopService } from "@merch/gen/merch/shop/v1/shop_pb";
import { reasonName, reasonOf } from "@merch/kit";
import { REPO_ROOT } from "@merch/testkit";

// The public Connect API on the gateway's port, as its three kinds of clients call it: plain curl
// (Connect JSON), buf curl (gRPC-Web), and a TypeScript client on @connectrpc/connect-web
// (Connect binary) -- against the real store.

const run = promisify(execFile);
const BUF = join(REPO_ROOT, "node_modules", ".bin", "buf");
const SHOP = "merch.shop.v1.ShopService";

let store: TestStore;
before(async () => {
  store = await startTestStore();
});
after(() => store?.stop());

async function curlJson(method: string, body: unknown, token?: string) {
  const args = ["-s", "-w", "\n%{http_code}", "-H", "content-type: application/json"];
  if (token) args.push("-H", `authorization: Bearer ${token}`);
  args.push("-d", JSON.stringify(body), `${store.url}/${SHOP}/${method}`);
  const { stdout } = await run("curl", args);
  const cut = stdout.lastIndexOf("\n");
  return { status: Number(stdout.slice(cut + 1)), body: JSON.parse(stdout.slice(0, cut)) as Record<string, unknown> };
}

async function bufCurl(method: string, body: unknown, token?: string) {
  const args = ["curl", "--protocol", "grpcweb", "--schema", join(REPO_ROOT, "proto"), "-d", JSON.stringify(body)];
  if (token) args.push("-H", `authorization: Bearer ${token}`);
  args.push(`${store.url}/${SHOP}/${method}`);
  const { stdout } = await run(BUF, args);
  return JSON.parse(stdout) as Record<string, unknown>;
}

const web = () => createClient(ShopService, createConnectTransport({ baseUrl: store.url, useBinaryFormat: true }));

test("Connect JSON with plain curl: register, log in, place and cancel an order", async () => {
  const account = { sid: "C1", username: "curl_user", email: "curl@example.com", password: "curl is enough" };
  assert.equal((await curlJson("Register", account)).status, 200);
  const login = await curlJson("Login", { username: account.username, password: account.password });
  assert.equal(login.status, 200);
  const token = String(login.body.token);
  assert.equal(login.body.expiresIn, 86400);
  const placed = await curlJson("PlaceOrder", { productId: 2, quantity: 2 }, token);
  assert.equal(placed.status, 200, JSON.stringify(placed.body));
  const order = placed.body.order as { id: number; totalPrice: string; status: string };
  assert.deepEqual([order.totalPrice, order.status], ["39.98", "ORDER_STATUS_PLACED"]);
  const cancelled = await curlJson("CancelOrder", { id: order.id }, token);
  assert.equal((cancelled.body.order as { status: string }).status, "ORDER_STATUS_CANCELLED");
  // A refusal is a Connect error whose ErrorInfo reason is the REST code.
  const refused = await curlJson("PlaceOrder", { productId: 99, quantity: 1 }, token);
  assert.equal(refused.status, 404);
  assert.equal(refused.body.code, "not_found");
  const details = refused.body.details as { type: string; value: string }[];
  const info = details.find((d) => d.type === ErrorInfoSchema.typeName);
  assert.match(Buffer.from(info?.value ?? "", "base64").toString(), /product_not_found/);
});

test("gRPC-Web with buf curl: place and cancel an order", async () => {
  const account = { sid: "G1", username: "grpcweb_user", email: "grpcweb@example.com", password: "grpc for the web" };
  await bufCurl("Register", account);
  const { token } = (await bufCurl("Login", { sid: account.sid, password: account.password })) as { token: string };
  const placed = (await bufCurl("PlaceOrder", { productId: 3, quantity: 1 }, token)) as {
    order: { id: number; totalPrice: string };
  };
  assert.equal(placed.order.totalPrice, "9.99");
  const cancelled = (await bufCurl("CancelOrder", { id: placed.order.id }, token)) as { order: { status: string } };
  assert.equal(cancelled.order.status, "ORDER_STATUS_CANCELLED");
  const refused = await run(BUF, [
    "curl",
    "--protocol",
    "grpcweb",
    "--schema",
    join(REPO_ROOT, "proto"),
    "-d",
    "{}",
    `${store.url}/${SHOP}/GetMe`,
  ]).catch((err: { stderr: string }) => err.stderr);
  assert.match(String(refused), /unauthenticated/);
});

test("Connect binary with @connectrpc/connect-web: the same store, the same refusals as REST", async () => {
  const shop = web();
  const account = { sid: "W1", username: "web_user", email: "web@example.com", password: "a browser's client" };
  await shop.register(account);
  const { token, user } = await shop.login({
    login: { case: "username", value: account.username },
    password: account.password,
  });
  assert.equal(user?.username, account.username);
  const headers = { authorization: `Bearer ${token}` };
  const { order } = await shop.placeOrder({ productId: 1, quantity: 1, idempotencyKey: "web-1" }, { headers });
  assert.equal(order?.status, OrderStatus.PLACED);
  const again = await shop.placeOrder({ productId: 1, quantity: 1, idempotencyKey: "web-1" }, { headers });
  assert.equal(again.replayed, true);
  assert.equal(again.order?.id, order?.id);

  // A REST order and a Connect order show up in each other's lists.
  const api = client(store.url);
  const rest = await api<{ id: number }>("POST", "/orders", { token, body: { product_id: 2, quantity: 1 } });
  assert.equal(rest.status, 201);
  const listed = await shop.listOrders({}, { headers });
  assert.deepEqual(
    listed.orders.map((o) => o.id),
    [rest.body.id, order?.id],
  );
  const viaRest = await api<{ items: { id: number }[] }>("GET", "/orders", { token });
  assert.deepEqual(
    viaRest.body.items.map((o) => o.id),
    [rest.body.id, order?.id],
  );

  // Each refusal: the Connect code of the reason's table row, and the REST code as ErrorInfo reason.
  const cases: [() => Promise<unknown>, Code, string][] = [
    [
      () => shop.placeOrder({ productId: 1, quantity: 3, idempotencyKey: "web-1" }, { headers }),
      Code.FailedPrecondition,
      "idempotency_key_reused",
    ],
    [() => shop.placeOrder({ productId: 1, quantity: 4 }, { headers }), Code.InvalidArgument, "validation_failed"],
    [() => shop.getOrder({ id: 999_999 }, { headers }), Code.NotFound, "order_not_found"],
    [() => shop.getMe({}), Code.Unauthenticated, "authentication_required"],
    [() => shop.getMe({}, { headers: { authorization: "Bearer not.a.token" } }), Code.Unauthenticated, "invalid_token"],
    [
      () => shop.login({ login: { case: "username", value: "web_user" }, password: "wrong" }),
      Code.Unauthenticated,
      "invalid_credentials",
    ],
    [() => shop.register(account), Code.AlreadyExists, "sid_taken"],
  ];
  for (const [call, code, reason] of cases) {
    const err = await call().then(
      () => assert.fail(`${reason}: the call succeeded`),
      (e: unknown) => ConnectError.from(e),
    );
    assert.equal(Code[err.code], Code[code], `${reason}: ${err.message}`);
    const got = reasonOf(err);
    assert.equal(got === undefined ? undefined : reasonName(got), reason);
  }

  // Logout ends the token for both doors at once.
  await shop.logout({}, { headers });
  const after = await api("GET", "/users/me", { token });
  assert.equal(after.status, 401);
});

test("insufficient stock is failed_precondition over Connect and 409 over REST", async () => {
  const shop = web();
  const account = { sid: "W2", username: "stock_user", email: "stock@example.com", password: "buying it all up" };
  await shop.register(account);
  const { token } = await shop.login({ login: { case: "sid", value: account.sid }, password: account.password });
  const headers = { authorization: `Bearer ${token}` };
  const { product } = await shop.getProduct({ id: 3 });
  assert.ok(product);
  // Buy the notebook out, three at a time.
  for (let left = product.stock; left >= 3; left -= 3)
    await shop.placeOrder({ productId: 3, quantity: 3 }, { headers });
  const err = await shop.placeOrder({ productId: 3, quantity: 3 }, { headers }).then(
    () => assert.fail("more than the stock was sold"),
    (e: unknown) => ConnectError.from(e),
  );
  assert.equal(err.code, Code.FailedPrecondition);
  assert.equal(reasonName(reasonOf(err) ?? (0 as never)), "insufficient_stock");
  const rest = await client(store.url)("POST", "/orders", { token, body: { product_id: 3, quantity: 3 } });
  assert.equal(rest.status, 409);
  // What the product page shows is what is left, at once.
  const page = await shop.getProduct({ id: 3 });
  assert.ok((page.product?.stock ?? -1) < 3);
});
