import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { client, launchChromium, startTestStore, type TestStore } from "@merch/devstack";
import type { Browser, BrowserContext, ConsoleMessage, Locator, Page } from "playwright-core";
import postgres from "postgres";

// The storefront's staff view in a real headless Chromium against the real store, used the way
// a person does, by the accessible names of the contract ("Running the shop (staff)"): a staff
// member adds a product and restocks it, a customer in a second browser context orders it, the
// staff member marks the order ready and then collected, and the customer sees each status.

const run = promisify(execFile);
/** Every action and wait of the browser gives up after this long. */
const ACTION_TIMEOUT_MS = 15_000;
/** The pages read orders and stock every few seconds; a change made elsewhere shows within this. */
const LIVE_MS = 20_000;
const PASSWORD = "staff view password";

let store: TestStore | undefined;
let browser: Browser | undefined;
let sql: postgres.Sql | undefined;

before(
  async () => {
    const [started, launched] = await Promise.allSettled([startTestStore(), launchChromium()]);
    if (started.status === "fulfilled") store = started.value;
    if (launched.status === "fulfilled") browser = launched.value;
    if (started.status === "rejected") throw started.reason;
    if (launched.status === "rejected") throw launched.reason;
    sql = postgres(started.value.stack.databaseUrl, { max: 2, onnotice: () => {} });
  },
  { timeout: 12 * 60_000 },
);

after(
  async () => {
    const closed = await Promise.allSettled([browser?.close(), sql?.end({ timeout: 5 })]);
    await store?.stop();
    for (const result of closed) if (result.status === "rejected") throw result.reason;
  },
  { timeout: 60_000 },
);

/** Console errors that are no fault of the page (see storefront.test.ts). */
const NOT_FAULTS = [
  /^Failed to load resource: the server responded with a status of 4\d\d/,
  /^The Cross-Origin-Opener-Policy header has been ignored, because the URL's origin was untrustworthy/,
];

async function person(): Promise<{ context: BrowserContext; page: Page; problems: () => string[] }> {
  assert.ok(browser, "chromium launched");
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(ACTION_TIMEOUT_MS);
  const errors: string[] = [];
  page.on("pageerror", (err) => errors.push(`uncaught: ${err.message}`));
  page.on("console", (msg: ConsoleMessage) => {
    if (msg.type() === "error") errors.push(msg.text());
  });
  return { context, page, problems: () => errors.filter((e) => !NOT_FAULTS.some((n) => n.test(e))) };
}

async function register(username: string, sid: string): Promise<void> {
  assert.ok(store);
  const res = await client(store.url)("POST", "/users/register", {
    body: { sid, username, email: `${sid}@example.com`, password: PASSWORD },
  });
  assert.equal(res.status, 201, res.text);
}

async function logIn(page: Page, username: string): Promise<void> {
  assert.ok(store);
  await page.goto(`${store.url}/shop/`);
  const form = page.getByRole("form", { name: "Log in" });
  await form.getByLabel("Username").fill(username);
  await form.getByLabel("Password").fill(PASSWORD);
  await form.getByRole("button", { name: "Log in" }).click();
  await page
    .getByRole("status")
    .filter({ hasText: /You are logged in/ })
    .waitFor();
}

function product(page: Page, name: string): Locator {
  return page.getByRole("article", { name, exact: true });
}

async function shownStock(page: Page, name: string): Promise<number> {
  const text =
    (await product(page, name)
      .getByText(/^\d+ in stock$/)
      .textContent()) ?? "";
  return Number.parseInt(text, 10);
}

test("staff add a product and restock it, a customer orders it, staff hand it over, the customer sees each status", {
  timeout: 240_000,
}, async () => {
  assert.ok(store && sql);
  await register("desk_staff", "S9001");
  await register("desk_customer", "C9001");
  // The operator makes the first staff account, as the README says.
  const granted = await run(process.execPath, ["scripts/staff.ts", "grant", "desk_staff"], {
    env: {
      ...process.env,
      DB_SERVICE_URL: store.stack.services["db-service"].url,
      SERVICE_CREDENTIAL: store.stack.serviceCredential,
    },
    timeout: 30_000,
  });
  assert.match(granted.stdout, /desk_staff is staff now/);

  const staff = await person();
  const customer = await person();
  try {
    await logIn(staff.page, "desk_staff");
    const newProduct = staff.page.getByRole("form", { name: "New product" });
    await newProduct.waitFor();
    await newProduct.getByLabel("Name", { exact: true }).fill("SUSTech Cap");
    await newProduct.getByLabel("Category", { exact: true }).fill("Apparel");
    await newProduct.getByLabel("Price", { exact: true }).fill("15");
    await newProduct.getByLabel("Stock", { exact: true }).fill("0");
    await newProduct.getByLabel("Description", { exact: true }).fill("A cap for the sun on the lake.");
    await newProduct.getByRole("button", { name: "Add product" }).click();
    await staff.page
      .getByRole("status")
      .filter({ hasText: /SUSTech Cap added/ })
      .waitFor();
    const cap = product(staff.page, "SUSTech Cap");
    await cap.waitFor();
    assert.match((await cap.textContent()) ?? "", /Price 15\.00/);
    assert.equal(await shownStock(staff.page, "SUSTech Cap"), 0);

    await cap.getByLabel("Add stock").fill("5");
    await cap.getByRole("button", { name: "Restock" }).click();
    await staff.page
      .getByRole("status")
      .filter({ hasText: /5 added, 5 in stock now/ })
      .waitFor();
    assert.equal(await shownStock(staff.page, "SUSTech Cap"), 5);
    const [row] = await sql`SELECT id, stock FROM products WHERE name = 'SUSTech Cap'`;
    assert.equal(row?.stock, 5);

    // A customer in another browser: the product is there, the staff controls are not.
    await logIn(customer.page, "desk_customer");
    const forCustomer = product(customer.page, "SUSTech Cap");
    await forCustomer.waitFor();
    assert.equal(await customer.page.getByRole("form", { name: "New product" }).count(), 0);
    assert.equal(await customer.page.getByRole("button", { name: "Restock" }).count(), 0);
    assert.equal(await customer.page.getByRole("list", { name: "Orders to hand over" }).count(), 0);
    await forCustomer.getByLabel("Quantity").fill("2");
    await forCustomer.getByRole("button", { name: "Order", exact: true }).click();
    const placed = await customer.page.getByRole("status").filter({ hasText: /Order #\d+ placed/ });
    await placed.waitFor();
    const orderId = Number(/Order #(\d+)/.exec((await placed.textContent()) ?? "")?.[1]);
    assert.ok(orderId > 0);
    const mine = customer.page
      .getByRole("list", { name: "Your orders" })
      .getByRole("listitem")
      .filter({ hasText: `Order #${orderId}` });
    await mine.filter({ hasText: "placed" }).waitFor();

    // The staff member hands it over: ready, then collected; the customer sees each.
    const desk = staff.page.getByRole("list", { name: "Orders to hand over" });
    const item = desk.getByRole("listitem").filter({ hasText: `Order #${orderId}` });
    await item.getByRole("button", { name: "Mark ready" }).click({ timeout: LIVE_MS });
    await staff.page
      .getByRole("status")
      .filter({ hasText: new RegExp(`Order #${orderId} .* is ready`) })
      .waitFor();
    await mine.filter({ hasText: "ready" }).waitFor({ timeout: LIVE_MS });
    // Only a placed order can be cancelled by its customer.
    assert.equal(await mine.getByRole("button", { name: "Cancel" }).count(), 0);

    await item.getByRole("button", { name: "Mark collected" }).click();
    await staff.page
      .getByRole("status")
      .filter({ hasText: new RegExp(`Order #${orderId} .* is collected`) })
      .waitFor();
    await item.waitFor({ state: "detached" });
    await mine.filter({ hasText: "collected" }).waitFor({ timeout: LIVE_MS });
    const [order] = await sql`SELECT status FROM orders WHERE id = ${orderId}`;
    assert.equal(order?.status, "collected");
    // The staff page's live stock follows the customer's order.
    await cap.getByText("3 in stock", { exact: true }).waitFor({ timeout: LIVE_MS });
    assert.deepEqual(staff.problems(), []);
    assert.deepEqual(customer.problems(), []);
  } finally {
    await Promise.allSettled([staff.context.close(), customer.context.close()]);
  }
});
