import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { type Client, Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { client, startTestStore, type TestStore } from "@merch/devstack";
import { OrderStatus, ShopService } from "@merch/gen/merch/shop/v1/shop_pb";
import { type ChannelRecord, followLogChannel, rejectsWith } from "@merch/testkit";
import postgres from "postgres";

// Running the shop (contract: "Running the shop (staff)"), against the real processes, a real
// PostgreSQL and a real Kafka: roles granted with `npm run staff`, checked on both doors and
// revoked at once; the catalogue, archiving and stock; the hand-over's transitions table on both
// doors; the events of every staff action read back from log-channel.

process.env.KAFKAJS_NO_PARTITIONER_WARNING = "1";

const run = promisify(execFile);
const PASSWORD = "staff tests password";

let store: TestStore;
let api: ReturnType<typeof client>;
let shop: Client<typeof ShopService>;
let sql: postgres.Sql;
let channel: Awaited<ReturnType<typeof followLogChannel>>;

before(async () => {
  // The race below measures what is right, not how fast: on a busy machine hundreds of writes in
  // flight may wait longer than the gateway's usual deadline for db-service.
  store = await startTestStore({ kafka: true, serviceEnv: { gateway: { RPC_TIMEOUT_MS: "60000" } } });
  api = client(store.url);
  shop = createClient(ShopService, createConnectTransport({ baseUrl: store.url, httpVersion: "1.1" }));
  sql = postgres(store.stack.databaseUrl, { max: 2, onnotice: () => {} });
  channel = await followLogChannel(store.kafka?.brokers ?? "");
});
after(async () => {
  await channel?.stop();
  await sql?.end();
  await store?.stop();
});

interface Account {
  id: number;
  username: string;
  token: string;
}

let n = 0;
async function newAccount(prefix: string): Promise<Account> {
  n++;
  const tag = `${prefix}${n}`;
  const body = { sid: tag, username: `${prefix}_${n}`, email: `${tag}@example.com`, password: PASSWORD };
  const reg = await api<{ id: number }>("POST", "/users/register", { body });
  assert.equal(reg.status, 201, reg.text);
  return { id: reg.body.id, username: body.username, token: await login(body.username) };
}

async function login(username: string): Promise<string> {
  const res = await api<{ token: string }>("POST", "/users/login", { body: { username, password: PASSWORD } });
  assert.equal(res.status, 200, res.text);
  return res.body.token;
}

/** `npm run staff -- <action> <username>`, as an operator runs it, against this store. */
async function staffCommand(action: string, username: string) {
  return run(process.execPath, ["scripts/staff.ts", action, username], {
    env: {
      ...process.env,
      DB_SERVICE_URL: store.stack.services["db-service"].url,
      SERVICE_CREDENTIAL: store.stack.serviceCredential,
    },
    timeout: 30_000,
  });
}

async function newStaff(prefix: string): Promise<Account> {
  const account = await newAccount(prefix);
  const { stdout } = await staffCommand("grant", account.username);
  assert.match(stdout, new RegExp(`${account.username} is staff now`));
  return account;
}

const STATUS_NAME: Record<number, string> = {
  [OrderStatus.PLACED]: "placed",
  [OrderStatus.READY]: "ready",
  [OrderStatus.COLLECTED]: "collected",
  [OrderStatus.CANCELLED]: "cancelled",
};

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

interface ProductJson {
  id: number;
  name: string;
  price: string;
  stock: number;
}
interface OrderJson {
  id: number;
  user_id: number;
  product_id: number;
  quantity: number;
  unit_price: string;
  status: string;
}

async function newProduct(staff: Account, name: string, stock: number, price = "12.50"): Promise<ProductJson> {
  const res = await api<ProductJson>("POST", "/products", {
    token: staff.token,
    body: { name, category: "Test", price, stock, description: "made by a test", slogan: "" },
  });
  assert.equal(res.status, 201, res.text);
  assert.equal(res.headers.get("location"), `/products/${res.body.id}`);
  return res.body;
}

async function order(customer: Account, productId: number, quantity = 1): Promise<OrderJson> {
  const res = await api<OrderJson>("POST", "/orders", {
    token: customer.token,
    body: { product_id: productId, quantity },
  });
  assert.equal(res.status, 201, res.text);
  return res.body;
}

function expectCode(res: { status: number; body: unknown; text: string }, status: number, code: string, where = "") {
  assert.equal(res.status, status, `${where} ${res.text}`);
  assert.equal((res.body as { code?: string }).code, code, `${where} ${res.text}`);
}

describe("roles", () => {
  test("every staff route and RPC: 401 without a token, 403 staff_only / permission_denied to a customer", async () => {
    const customer = await newAccount("cu");
    const routes: [string, string, unknown][] = [
      ["POST", "/products", { name: "Nope", category: "Test", price: "1.00" }],
      ["PATCH", "/products/1", { price: "1.00" }],
      ["POST", "/products/1/stock", { delta: 5, reason: "delivery" }],
      ["GET", "/staff/orders", undefined],
      ["POST", "/orders/1/ready", undefined],
      ["POST", "/orders/1/collected", undefined],
    ];
    const before = await sql`SELECT id, stock, price, name FROM products ORDER BY id`;
    for (const [method, path, body] of routes) {
      const opts = body === undefined ? {} : { body };
      const anonymous = await api(method, path, opts);
      assert.equal(anonymous.status, 401, `${method} ${path} ${anonymous.text}`);
      assert.match(anonymous.headers.get("www-authenticate") ?? "", /^Bearer/);
      expectCode(await api(method, path, { ...opts, token: customer.token }), 403, "staff_only", `${method} ${path}`);
    }
    const denied = (call: Promise<unknown>) => rejectsWith(call, Code.PermissionDenied, "staff_only");
    const as = bearer(customer.token);
    await denied(shop.createProduct({ name: "Nope", category: "Test", price: "1.00" }, as));
    await denied(shop.updateProduct({ id: 1, price: "1.00" }, as));
    await denied(shop.adjustStock({ id: 1, delta: 5, reason: "delivery" }, as));
    await denied(shop.listCatalogue({}, as));
    await denied(shop.listAllOrders({}, as));
    await denied(shop.markOrderReady({ id: 1 }, as));
    await denied(shop.markOrderCollected({ id: 1 }, as));
    const unauthenticated = (call: Promise<unknown>) =>
      rejectsWith(call, Code.Unauthenticated, "authentication_required");
    await unauthenticated(shop.createProduct({ name: "Nope", category: "Test", price: "1.00" }));
    await unauthenticated(shop.adjustStock({ id: 1, delta: 5, reason: "delivery" }));
    await unauthenticated(shop.listAllOrders({}));
    await unauthenticated(shop.markOrderReady({ id: 1 }));
    assert.deepEqual(await sql`SELECT id, stock, price, name FROM products ORDER BY id`, before);
  });

  test("registration makes a customer; npm run staff grants and revokes, and a revoke stops the old token at once", async () => {
    const a = await newAccount("rv");
    const [row] = await sql`SELECT role FROM users WHERE id = ${a.id}`;
    assert.equal(row?.role, "customer");
    const granted = await staffCommand("grant", a.username);
    assert.match(granted.stdout, /is staff now/);
    assert.match((await staffCommand("grant", a.username)).stdout, /is staff already/);
    // The token from before the grant works for staff at once: no new login needed.
    assert.equal((await api("GET", "/staff/orders", { token: a.token })).status, 200);
    await shop.listAllOrders({}, bearer(a.token));

    assert.match((await staffCommand("revoke", a.username)).stdout, /is a customer now/);
    expectCode(await api("GET", "/staff/orders", { token: a.token }), 403, "staff_only");
    await rejectsWith(shop.listAllOrders({}, bearer(a.token)), Code.PermissionDenied, "staff_only");
    // Still a customer: the account itself goes on.
    assert.equal((await api("GET", "/users/me", { token: a.token })).status, 200);

    await assert.rejects(staffCommand("grant", "nobody_at_all"), (err: Error & { stderr?: string }) => {
      assert.match(err.stderr ?? "", /no account is named nobody_at_all/);
      return true;
    });
  });

  test("a staff account deactivated: its token is refused at once (401) on both doors", async () => {
    const s = await newStaff("dv");
    const other = await login(s.username);
    assert.equal((await api("GET", "/staff/orders", { token: other })).status, 200);
    assert.equal((await api("POST", "/users/me/deactivate", { token: s.token })).status, 204);
    expectCode(await api("GET", "/staff/orders", { token: other }), 401, "invalid_token");
    expectCode(
      await api("POST", "/products/1/stock", { token: other, body: { delta: 1, reason: "x" } }),
      401,
      "invalid_token",
    );
    await rejectsWith(shop.listAllOrders({}, bearer(other)), Code.Unauthenticated, "invalid_token");
  });

  test("db-service's staff RPCs need the service credential, and a staff session besides", async () => {
    const call = (path: string, body: unknown, credential?: string) =>
      fetch(`${store.stack.services["db-service"].url}/merch.store.v1.${path}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(credential === undefined ? {} : { "x-service-credential": credential }),
        },
        body: JSON.stringify(body),
      });
    const customer = await newAccount("ds");
    const [session] = await sql`SELECT id FROM sessions WHERE user_id = ${customer.id}`;
    const asCustomer = { userId: customer.id, sessionId: session?.id };
    const cred = store.stack.serviceCredential;
    for (const [path, body] of [
      ["UserService/SetUserRole", { username: customer.username, role: "ROLE_STAFF" }],
      ["CatalogueService/CreateProduct", { session: asCustomer, name: "N", category: "C", price: "1.00" }],
      ["CatalogueService/AdjustStock", { session: asCustomer, id: 1, delta: 1, reason: "r" }],
      ["OrderService/ListAllOrders", { session: asCustomer }],
      ["OrderService/MarkOrderReady", { session: asCustomer, orderId: 1 }],
    ] as const) {
      const refused = await call(path, body);
      assert.equal(refused.status, 401, path);
      if (path === "UserService/SetUserRole") continue;
      const denied = await call(path, body, cred);
      assert.equal(denied.status, 403, path);
      assert.match(await denied.text(), /staff_only/, path);
    }
    const [row] = await sql`SELECT role FROM users WHERE id = ${customer.id}`;
    assert.equal(row?.role, "customer");
  });
});

describe("the catalogue", () => {
  test("create, rename, reprice, refuse a taken name; orders keep their unit price", async () => {
    const staff = await newStaff("ca");
    const customer = await newAccount("cb");
    const p = await newProduct(staff, "SUSTech Cap", 10, "15.00");
    assert.deepEqual(
      { name: p.name, price: p.price, stock: p.stock },
      { name: "SUSTech Cap", price: "15.00", stock: 10 },
    );
    expectCode(
      await api("POST", "/products", {
        token: staff.token,
        body: { name: "sustech cap", category: "X", price: "1.00" },
      }),
      409,
      "product_name_taken",
    );
    await rejectsWith(
      shop.createProduct({ name: "SUSTech Hoodie", category: "X", price: "1.00" }, bearer(staff.token)),
      Code.AlreadyExists,
      "product_name_taken",
    );
    const before = await order(customer, p.id, 2);
    assert.equal(before.unit_price, "15.00");
    const changed = await api<ProductJson>("PATCH", `/products/${p.id}`, {
      token: staff.token,
      body: { price: "17.25", name: "SUSTech Cap (blue)" },
    });
    assert.equal(changed.status, 200, changed.text);
    assert.equal(changed.body.price, "17.25");
    assert.equal((await api<ProductJson>("GET", `/products/${p.id}`)).body.name, "SUSTech Cap (blue)");
    const kept = await api<OrderJson>("GET", `/orders/${before.id}`, { token: customer.token });
    assert.equal(kept.body.unit_price, "15.00");
    assert.equal((await order(customer, p.id, 1)).unit_price, "17.25");
    const viaShop = await shop.updateProduct({ id: p.id, slogan: "Keep the sun off" }, bearer(staff.token));
    assert.equal(viaShop.product?.slogan, "Keep the sun off");

    // Field rules, from rules.proto, on both doors.
    const bad: unknown[] = [
      { name: " padded", category: "X", price: "1.00" },
      { name: "Ok", category: "X", price: "1.5" },
      { name: "Ok", category: "X", price: "1.00", stock: -1 },
      { name: "Ok", category: "X", price: "1.00", extra: true },
      { category: "X", price: "1.00" },
    ];
    for (const body of bad) {
      expectCode(
        await api("POST", "/products", { token: staff.token, body }),
        400,
        "validation_failed",
        JSON.stringify(body),
      );
    }
    expectCode(await api("PATCH", `/products/${p.id}`, { token: staff.token, body: {} }), 400, "validation_failed");
    expectCode(
      await api("PATCH", "/products/999999", { token: staff.token, body: { price: "1.00" } }),
      404,
      "product_not_found",
    );
    await rejectsWith(
      shop.createProduct({ name: "Ok", category: "X", price: "1.5" }, bearer(staff.token)),
      Code.InvalidArgument,
      "validation_failed",
    );
  });

  test("stock: adjustments with a reason, never below zero, and the pages follow at once", async () => {
    const staff = await newStaff("st");
    const p = await newProduct(staff, "SUSTech Scarf", 3);
    const up = await api<ProductJson>("POST", `/products/${p.id}/stock`, {
      token: staff.token,
      body: { delta: 7, reason: "delivery from the printer" },
    });
    assert.equal(up.status, 200, up.text);
    assert.equal(up.body.stock, 10);
    assert.equal((await api<ProductJson>("GET", `/products/${p.id}`)).body.stock, 10);
    const listed = (await api<ProductJson[]>("GET", "/products")).body.find((x) => x.id === p.id);
    assert.equal(listed?.stock, 10);
    expectCode(
      await api("POST", `/products/${p.id}/stock`, { token: staff.token, body: { delta: -11, reason: "count" } }),
      409,
      "insufficient_stock",
    );
    await rejectsWith(
      shop.adjustStock({ id: p.id, delta: -11, reason: "count" }, bearer(staff.token)),
      Code.FailedPrecondition,
      "insufficient_stock",
    );
    const down = await shop.adjustStock({ id: p.id, delta: -10, reason: "water damage" }, bearer(staff.token));
    assert.equal(down.product?.stock, 0);
    expectCode(
      await api("POST", `/products/${p.id}/stock`, { token: staff.token, body: { delta: 0, reason: "x" } }),
      400,
      "validation_failed",
    );
    expectCode(
      await api("POST", `/products/${p.id}/stock`, { token: staff.token, body: { delta: 1 } }),
      400,
      "validation_failed",
    );
    expectCode(
      await api("POST", "/products/999999/stock", { token: staff.token, body: { delta: 1, reason: "x" } }),
      404,
      "product_not_found",
    );
    const rows =
      await sql`SELECT delta, reason, staff_user_id FROM stock_adjustments WHERE product_id = ${p.id} ORDER BY id`;
    assert.deepEqual(
      rows.map((r) => [r.delta, r.reason, r.staff_user_id]),
      [
        [7, "delivery from the printer", staff.id],
        [-10, "water damage", staff.id],
      ],
    );
  });

  test("archived: not listed, 404 by id, not orderable, kept in its orders and shown to staff; then back", async () => {
    const staff = await newStaff("ar");
    const customer = await newAccount("ac");
    const p = await newProduct(staff, "SUSTech Lanyard", 20);
    const held = await order(customer, p.id, 1);
    const archived = await api("PATCH", `/products/${p.id}`, { token: staff.token, body: { archived: true } });
    assert.equal(archived.status, 200, archived.text);

    assert.ok(!(await api<ProductJson[]>("GET", "/products")).body.some((x) => x.id === p.id));
    assert.ok(!(await shop.listProducts({})).products.some((x) => x.id === p.id));
    expectCode(await api("GET", `/products/${p.id}`), 404, "product_not_found");
    await rejectsWith(shop.getProduct({ id: p.id }), Code.NotFound, "product_not_found");
    expectCode(
      await api("POST", "/orders", { token: customer.token, body: { product_id: p.id, quantity: 1 } }),
      404,
      "product_not_found",
    );
    await rejectsWith(
      shop.placeOrder({ productId: p.id, quantity: 1 }, bearer(customer.token)),
      Code.NotFound,
      "product_not_found",
    );
    // Its orders keep it, for the customer and for staff.
    assert.equal((await api<OrderJson>("GET", `/orders/${held.id}`, { token: customer.token })).body.product_id, p.id);
    const forStaff = await api<{ items: OrderJson[] }>("GET", `/staff/orders?product_id=${p.id}`, {
      token: staff.token,
    });
    assert.deepEqual(
      forStaff.body.items.map((o) => o.id),
      [held.id],
    );
    const catalogue = await shop.listCatalogue({}, bearer(staff.token));
    const entry = catalogue.entries.find((e) => e.product?.id === p.id);
    assert.equal(entry?.archived, true);
    // A cancellation still gives its stock back, and staff still restock it.
    assert.equal((await api("POST", `/orders/${held.id}/cancel`, { token: customer.token })).status, 200);
    const restocked = await api<ProductJson>("POST", `/products/${p.id}/stock`, {
      token: staff.token,
      body: { delta: 5, reason: "found a box" },
    });
    assert.equal(restocked.body.stock, 25);

    await shop.updateProduct({ id: p.id, archived: false }, bearer(staff.token));
    const list = (await api<ProductJson[]>("GET", "/products")).body;
    assert.equal(list.find((x) => x.id === p.id)?.stock, 25);
    assert.deepEqual(
      list.map((x) => x.id),
      [...list.map((x) => x.id)].sort((a, b) => a - b),
      "listed by id",
    );
    assert.equal((await api("GET", `/products/${p.id}`)).status, 200);
    await order(customer, p.id, 1);
  });
});

describe("hand-over", () => {
  type Move = "ready" | "collected" | "staff-cancel" | "customer-cancel";
  /** Puts a new order in `status` by the allowed moves. */
  async function orderIn(status: string, staff: Account, customer: Account, productId: number): Promise<number> {
    const o = await order(customer, productId);
    if (status === "ready" || status === "collected")
      await api("POST", `/orders/${o.id}/ready`, { token: staff.token });
    if (status === "collected") await api("POST", `/orders/${o.id}/collected`, { token: staff.token });
    if (status === "cancelled") await api("POST", `/orders/${o.id}/cancel`, { token: customer.token });
    return o.id;
  }

  // From each status, each move: the status it leads to, or null when it is refused (409).
  const TABLE: Record<string, Record<Move, string | null>> = {
    placed: { ready: "ready", collected: null, "staff-cancel": "cancelled", "customer-cancel": "cancelled" },
    ready: { ready: null, collected: "collected", "staff-cancel": "cancelled", "customer-cancel": null },
    collected: { ready: null, collected: null, "staff-cancel": null, "customer-cancel": null },
    // Cancelling a cancelled order answers it again (200), giving nothing back.
    cancelled: { ready: null, collected: null, "staff-cancel": "cancelled", "customer-cancel": "cancelled" },
  };

  for (const door of ["REST", "ShopService"] as const) {
    test(`every allowed and refused move, over ${door}; stock comes back exactly once`, async () => {
      const staff = await newStaff(door === "REST" ? "hr" : "hs");
      const customer = await newAccount(door === "REST" ? "hc" : "hd");
      const p = await newProduct(staff, `Hand-over ${door}`, 100);
      for (const [from, moves] of Object.entries(TABLE)) {
        for (const [move, to] of Object.entries(moves) as [Move, string | null][]) {
          const id = await orderIn(from, staff, customer, p.id);
          const stockBefore = (await api<ProductJson>("GET", `/products/${p.id}`)).body.stock;
          const who = move === "customer-cancel" ? customer : staff;
          const where = `${from} --${move}--> ${to ?? "refused"}`;
          let status: string | null;
          if (door === "REST") {
            const path = move === "ready" ? "ready" : move === "collected" ? "collected" : "cancel";
            const res = await api<OrderJson>("POST", `/orders/${id}/${path}`, { token: who.token });
            if (to === null) expectCode(res, 409, "invalid_transition", where);
            else assert.equal(res.status, 200, `${where}: ${res.text}`);
            status = to === null ? null : res.body.status;
          } else {
            const as = bearer(who.token);
            const call =
              move === "ready"
                ? shop.markOrderReady({ id }, as)
                : move === "collected"
                  ? shop.markOrderCollected({ id }, as)
                  : shop.cancelOrder({ id }, as);
            if (to === null) {
              await rejectsWith(call, Code.FailedPrecondition, "invalid_transition");
              status = null;
            } else {
              const res = await call;
              status = STATUS_NAME[res.order?.status ?? 0] ?? null;
            }
          }
          assert.equal(status, to, where);
          // The customer sees the status at once.
          const seen = await api<OrderJson>("GET", `/orders/${id}`, { token: customer.token });
          assert.equal(seen.body.status, to ?? from, where);
          const stockAfter = (await api<ProductJson>("GET", `/products/${p.id}`)).body.stock;
          const givenBack = to === "cancelled" && from !== "cancelled" ? 1 : 0;
          assert.equal(stockAfter, stockBefore + givenBack, `${where}: stock`);
        }
      }
      expectCode(await api("POST", "/orders/999999/ready", { token: staff.token }), 404, "order_not_found");
      await rejectsWith(shop.markOrderCollected({ id: 999999 }, bearer(staff.token)), Code.NotFound, "order_not_found");
    });
  }

  test("staff list everyone's orders, newest first, by status and product, page by page", async () => {
    const staff = await newStaff("ls");
    const a = await newAccount("la");
    const b = await newAccount("lb");
    const p = await newProduct(staff, "Listing product", 50);
    const ids: number[] = [];
    for (let i = 0; i < 5; i++) ids.push((await order(i % 2 === 0 ? a : b, p.id)).id);
    await api("POST", `/orders/${ids[1]}/ready`, { token: staff.token });
    await api("POST", `/orders/${ids[3]}/ready`, { token: staff.token });
    const page1 = await api<{ items: OrderJson[]; next_cursor: string | null }>(
      "GET",
      `/staff/orders?product_id=${p.id}&limit=3`,
      { token: staff.token },
    );
    assert.equal(page1.status, 200, page1.text);
    assert.deepEqual(
      page1.body.items.map((o) => o.id),
      [ids[4], ids[3], ids[2]],
    );
    assert.ok(page1.body.next_cursor);
    const page2 = await api<{ items: OrderJson[]; next_cursor: string | null }>(
      "GET",
      `/staff/orders?product_id=${p.id}&limit=3&cursor=${page1.body.next_cursor}`,
      { token: staff.token },
    );
    assert.deepEqual(
      page2.body.items.map((o) => o.id),
      [ids[1], ids[0]],
    );
    assert.equal(page2.body.next_cursor, null);
    const ready = await api<{ items: OrderJson[] }>("GET", `/staff/orders?status=ready&product_id=${p.id}`, {
      token: staff.token,
    });
    assert.deepEqual(
      ready.body.items.map((o) => o.id),
      [ids[3], ids[1]],
    );
    assert.deepEqual(new Set(ready.body.items.map((o) => o.user_id)), new Set([b.id]));
    const viaShop = await shop.listAllOrders({ status: OrderStatus.PLACED, productId: p.id }, bearer(staff.token));
    assert.deepEqual(
      viaShop.orders.map((o) => o.id),
      [ids[4], ids[2], ids[0]],
    );
    expectCode(await api("GET", "/staff/orders?status=lost", { token: staff.token }), 400, "validation_failed");
    expectCode(await api("GET", "/staff/orders?limit=0", { token: staff.token }), 400, "validation_failed");
  });
});

describe("concurrency", () => {
  test("hundreds of restocks, orders and cancellations by staff and customers racing on one product: not a unit lost", async () => {
    const staff = await newStaff("cc");
    const customers = await Promise.all(Array.from({ length: 8 }, () => newAccount("cr")));
    const initial = 40;
    const p = await newProduct(staff, "Race product", initial);
    // Separate clients: each its own connections, so the writes really interleave.
    const clients = Array.from({ length: 16 }, () => client(store.url));
    let deltas = 0;
    const placed: OrderJson[] = [];
    let refusedForStock = 0;
    const work: Promise<void>[] = [];
    for (let i = 0; i < 300; i++) {
      const api = clients[i % clients.length] as ReturnType<typeof client>;
      // Restocks of 1..3 and removals of 1..2 (refused when they would go below zero).
      const delta = i % 3 === 2 ? -((i % 2) + 1) : (i % 3) + 1;
      work.push(
        api<ProductJson>("POST", `/products/${p.id}/stock`, {
          token: staff.token,
          body: { delta, reason: `race ${i}` },
        }).then((res) => {
          if (res.status === 200) deltas += delta;
          else expectCode(res, 409, "insufficient_stock");
        }),
      );
      const customer = customers[i % customers.length] as Account;
      work.push(
        api<OrderJson>("POST", "/orders", {
          token: customer.token,
          body: { product_id: p.id, quantity: (i % 3) + 1 },
        }).then((res) => {
          if (res.status === 201) placed.push(res.body);
          else {
            expectCode(res, 409, "insufficient_stock");
            refusedForStock++;
          }
        }),
      );
    }
    await Promise.all(work);
    // Cancellations by staff and by their customers racing on the same orders: each order's
    // stock comes back once.
    const cancels: Promise<unknown>[] = [];
    for (const [i, o] of placed.entries()) {
      if (i % 2 !== 0) continue;
      const owner = customers.find((c) => c.id === o.user_id) as Account;
      const a = clients[i % clients.length] as ReturnType<typeof client>;
      const b = clients[(i + 1) % clients.length] as ReturnType<typeof client>;
      cancels.push(a("POST", `/orders/${o.id}/cancel`, { token: staff.token }));
      cancels.push(b("POST", `/orders/${o.id}/cancel`, { token: owner.token }));
    }
    // A second wave of restocks and orders races the cancellations.
    const firstWave = placed.length;
    const wave: Promise<void>[] = [];
    for (let i = 0; i < 100; i++) {
      const api = clients[(i + 3) % clients.length] as ReturnType<typeof client>;
      const customer = customers[(i + 1) % customers.length] as Account;
      wave.push(
        api<ProductJson>("POST", `/products/${p.id}/stock`, {
          token: staff.token,
          body: { delta: -1, reason: `wave ${i}` },
        }).then((res) => {
          if (res.status === 200) deltas -= 1;
          else expectCode(res, 409, "insufficient_stock");
        }),
        api<OrderJson>("POST", "/orders", {
          token: customer.token,
          body: { product_id: p.id, quantity: 1 },
        }).then((res) => {
          if (res.status === 201) placed.push(res.body);
          else expectCode(res, 409, "insufficient_stock");
        }),
      );
    }
    await Promise.all(wave);
    const answers = (await Promise.all(cancels)) as { status: number }[];
    assert.ok(answers.every((r) => r.status === 200));
    const cancelledQty = placed
      .slice(0, firstWave)
      .filter((_, i) => i % 2 === 0)
      .reduce((sum, o) => sum + o.quantity, 0);
    const placedQty = placed.reduce((sum, o) => sum + o.quantity, 0);
    const [row] = await sql`SELECT stock FROM products WHERE id = ${p.id}`;
    assert.equal(row?.stock, initial + deltas - placedQty + cancelledQty);
    assert.ok((row?.stock as number) >= 0);
    assert.equal((await api<ProductJson>("GET", `/products/${p.id}`)).body.stock, row?.stock);
    const [sums] =
      await sql`SELECT coalesce(sum(delta), 0)::int AS d FROM stock_adjustments WHERE product_id = ${p.id}`;
    assert.equal(sums?.d, deltas);
    assert.ok(placed.length > 0 && refusedForStock >= 0);
  });
});

describe("events", () => {
  test("every staff action is an event on log-channel naming the staff user", async () => {
    const staff = await newStaff("ev");
    const customer = await newAccount("ew");
    const p = await newProduct(staff, "Event product", 5);
    await api("PATCH", `/products/${p.id}`, { token: staff.token, body: { price: "3.00" } });
    await api("POST", `/products/${p.id}/stock`, { token: staff.token, body: { delta: 4, reason: "delivery" } });
    const o1 = await order(customer, p.id);
    const o2 = await order(customer, p.id);
    await api("POST", `/orders/${o1.id}/ready`, { token: staff.token });
    await api("POST", `/orders/${o1.id}/collected`, { token: staff.token });
    await api("POST", `/orders/${o2.id}/cancel`, { token: staff.token });

    const by = (event: string, extra: (r: ChannelRecord) => boolean = () => true) =>
      channel.waitFor((r) => r.record.event === event && r.record.user_id === staff.id && extra(r), event, 30_000);
    const created = await by("product.created", (r) => r.record.attributes.product_id === String(p.id));
    assert.equal(created.record.attributes.staff_user_id, String(staff.id));
    const updated = await by("product.updated", (r) => r.record.attributes.product_id === String(p.id));
    assert.equal(updated.record.attributes.price, "3.00");
    const adjusted = await by("stock.adjusted", (r) => r.record.attributes.product_id === String(p.id));
    assert.equal(adjusted.record.attributes.delta, "4");
    assert.equal(adjusted.record.attributes.reason, "delivery");
    await by("order.ready", (r) => r.record.attributes.order_id === String(o1.id));
    await by("order.collected", (r) => r.record.attributes.order_id === String(o1.id));
    const cancelled = await by("order.cancelled", (r) => r.record.attributes.order_id === String(o2.id));
    assert.equal(cancelled.record.attributes.by, "staff");
    assert.equal(cancelled.record.attributes.customer_user_id, String(customer.id));
  });
});
