import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { after, before, test } from "node:test";
import { launchChromium, startTestStore, type TestStore } from "@merch/devstack";
import { STOREFRONT_CSP } from "@merch/gateway";
import { REPO_ROOT } from "@merch/testkit";
import type { Browser, ConsoleMessage, Locator, Page } from "playwright-core";
import postgres from "postgres";

// The storefront at /shop/ in a real headless Chromium against the real store, driven the way a
// person (or a screen reader) finds things: by roles, labels and accessible names.
//
// STOREFRONT_SCREENSHOT=docs/storefront.png saves the README's screenshot after the orders; a
// normal run leaves the repository alone.

/**
 * The browser reaches the store under a name of its own, as a person on another machine would:
 * plain HTTP on an origin that is not localhost, where browsers withhold what they keep for
 * secure origins (crypto.randomUUID, upgrade-insecure-requests leniency).
 */
const HOST = "merch-store.test";
/** Every action and wait of the browser gives up after this long. */
const ACTION_TIMEOUT_MS = 15_000;
/** The page reads the stock every few seconds; a change made elsewhere shows within this. */
const LIVE_STOCK_MS = 20_000;

let store: TestStore | undefined;
let browser: Browser | undefined;
let sql: postgres.Sql | undefined;

before(
  async () => {
    // Both take a while and neither needs the other; whichever started is stopped in after().
    const [started, launched] = await Promise.allSettled([
      startTestStore(),
      launchChromium({ args: [`--host-resolver-rules=MAP ${HOST} 127.0.0.1`] }),
    ]);
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
    // The store is stopped whatever the others do; their failures are reported after.
    const closed = await Promise.allSettled([browser?.close(), sql?.end({ timeout: 5 })]);
    await store?.stop();
    for (const result of closed) if (result.status === "rejected") throw result.reason;
  },
  { timeout: 60_000 },
);

function base(): string {
  assert.ok(store, "the store started");
  return store.url;
}

/** The store as the browser sees it. */
function site(): string {
  const url = new URL(base());
  url.hostname = HOST;
  return url.origin;
}

async function stockInDatabase(productId: number): Promise<number> {
  assert.ok(sql);
  const [row] = await sql`SELECT stock FROM products WHERE id = ${productId}`;
  return Number(row?.stock);
}

/** Console errors that are no fault of the page. */
const NOT_FAULTS = [
  // Refusals (4xx) are the flow's expected answers; Chromium reports each as a failed load.
  /^Failed to load resource: the server responded with a status of 4\d\d/,
  // helmet's Cross-Origin-Opener-Policy takes effect behind TLS only; on plain HTTP Chromium says so.
  /^The Cross-Origin-Opener-Policy header has been ignored, because the URL's origin was untrustworthy/,
];

/**
 * A page that records what went wrong in it: uncaught errors, console errors, and every
 * Content-Security-Policy violation (reported by the browser as a DOM event, which an init
 * script turns into a console message so that it reaches the test).
 */
async function watchedPage(): Promise<{ page: Page; problems: () => string[]; close: () => Promise<void> }> {
  assert.ok(browser, "chromium launched");
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  try {
    await context.addInitScript({
      content: `document.addEventListener("securitypolicyviolation", (e) =>
        console.error("CSP violation: " + e.violatedDirective + " blocked " + (e.blockedURI || "inline")));`,
    });
    const page = await context.newPage();
    page.setDefaultTimeout(ACTION_TIMEOUT_MS);
    page.setDefaultNavigationTimeout(ACTION_TIMEOUT_MS);
    const errors: string[] = [];
    page.on("pageerror", (err) => errors.push(`uncaught: ${err.message}`));
    page.on("console", (msg: ConsoleMessage) => {
      if (msg.type() === "error") errors.push(msg.text());
    });
    return {
      page,
      problems: () => errors.filter((e) => !NOT_FAULTS.some((notice) => notice.test(e))),
      close: () => context.close(),
    };
  } catch (err) {
    await context.close();
    throw err;
  }
}

/** Waits until the live region says something matching `text`, and returns what it says. */
async function message(page: Page, role: "status" | "alert", text: RegExp): Promise<string> {
  const region = page.getByRole(role);
  await region.filter({ hasText: text }).waitFor();
  return (await region.textContent()) ?? "";
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

async function order(page: Page, name: string, quantity: number): Promise<void> {
  const article = product(page, name);
  await article.getByLabel("Quantity").fill(String(quantity));
  await article.getByRole("button", { name: "Order", exact: true }).click();
}

test("GET /shop redirects to /shop/, which serves the page and its assets under the strict CSP", async () => {
  const redirect = await fetch(`${base()}/shop`, { redirect: "manual", signal: AbortSignal.timeout(5000) });
  assert.equal(redirect.status, 301);
  assert.equal(redirect.headers.get("location"), "/shop/");
  for (const [path, type] of [
    ["/shop/", "text/html"],
    ["/shop/shop.js", "text/javascript"],
    ["/shop/shop.css", "text/css"],
  ] as const) {
    const res = await fetch(`${base()}${path}`, { signal: AbortSignal.timeout(5000) });
    assert.equal(res.status, 200, path);
    assert.equal(res.headers.get("content-type")?.split(";")[0], type, path);
    assert.equal(res.headers.get("content-security-policy"), STOREFRONT_CSP, path);
    const etag = res.headers.get("etag");
    assert.ok(etag, path);
    const again = await fetch(`${base()}${path}`, {
      headers: { "if-none-match": etag },
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(again.status, 304, `${path} unchanged`);
  }
  // Anything else under /shop/ is not found, as problem details like every unknown route.
  const missing = await fetch(`${base()}/shop/main.ts`, { signal: AbortSignal.timeout(5000) });
  assert.equal(missing.status, 404);
  assert.equal(missing.headers.get("content-type")?.split(";")[0], "application/problem+json");
});

test("the whole shopping flow, by accessible names, with refusals in words and stock equal to the database's", {
  timeout: 150_000,
}, async () => {
  const { page, problems, close } = await watchedPage();
  try {
    await page.goto(`${site()}/shop`);
    assert.equal(new URL(page.url()).pathname, "/shop/", "/shop redirects to /shop/");
    assert.equal(await page.title(), "SUSTech Merch Store");

    // Browsing needs no account: three products, each with its price, stock and order form.
    const seeded = [
      ["SUSTech Hoodie", "49.99"],
      ["SUSTech Water Bottle", "19.99"],
      ["SUSTech Notebook", "9.99"],
    ] as const;
    await product(page, "SUSTech Hoodie").waitFor();
    assert.equal(await page.getByRole("article").count(), 3);
    for (const [name, price] of seeded) {
      const article = product(page, name);
      assert.equal(await article.getByRole("heading").textContent(), name);
      assert.match((await article.textContent()) ?? "", new RegExp(`Price ${price.replace(".", "\\.")}`));
      assert.equal(await shownStock(page, name), 500);
      assert.ok(await article.getByLabel("Quantity").isVisible());
      assert.ok(await article.getByRole("button", { name: "Order", exact: true }).isVisible());
    }

    // Register.
    const register = page.getByRole("form", { name: "Create an account" });
    await register.getByLabel("Student ID").fill("12110001");
    await register.getByLabel("Username").fill("alice");
    await register.getByLabel("Email").fill("alice@mail.sustech.edu.cn");
    await register.getByLabel("Password").fill("correct horse battery");
    await register.getByRole("button", { name: "Register" }).click();
    await message(page, "status", /Account alice created/);

    // A wrong password first: refused, in words, as an alert.
    const login = page.getByRole("form", { name: "Log in" });
    await login.getByLabel("Username").fill("alice");
    await login.getByLabel("Password").fill("not her password");
    await login.getByRole("button", { name: "Log in" }).click();
    assert.equal(await message(page, "alert", /Wrong username or password/), "Wrong username or password.");
    assert.equal(await page.getByRole("status").textContent(), "", "a refusal replaces the success message");

    await login.getByLabel("Password").fill("correct horse battery");
    await login.getByRole("button", { name: "Log in" }).click();
    await message(page, "status", /Welcome, alice/);
    assert.ok(await page.getByRole("button", { name: "Log out" }).isVisible());
    assert.equal(await login.isVisible(), false, "the login form is gone while logged in");
    assert.equal(await page.getByRole("alert").textContent(), "");

    // Order 2 hoodies: the message comes with the stock already updated, equal to the database's.
    await order(page, "SUSTech Hoodie", 2);
    const placed = await message(page, "status", /Order #\d+ placed: 2 × SUSTech Hoodie/);
    const hoodieOrder = Number(/Order #(\d+)/.exec(placed)?.[1]);
    assert.match(placed, /total 99\.98/);
    assert.equal(await stockInDatabase(1), 498);
    assert.equal(await shownStock(page, "SUSTech Hoodie"), await stockInDatabase(1));

    await order(page, "SUSTech Water Bottle", 1);
    await message(page, "status", /Order #\d+ placed: 1 × SUSTech Water Bottle, total 19\.99/);
    assert.equal(await shownStock(page, "SUSTech Water Bottle"), await stockInDatabase(2));
    assert.equal(await shownStock(page, "SUSTech Water Bottle"), 499);

    const screenshot = process.env.STOREFRONT_SCREENSHOT;
    if (screenshot) {
      const path = resolve(REPO_ROOT, screenshot);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, await page.screenshot({ fullPage: false }));
    }

    // The orders, newest first, each with id, product, quantity, total and status.
    const orders = page.getByRole("list", { name: "Your orders" });
    assert.equal(await orders.getByRole("listitem").count(), 2);
    const hoodieItem = orders.getByRole("listitem").filter({ hasText: `Order #${hoodieOrder}` });
    assert.ok(sql);
    const [row] = await sql`SELECT quantity, total_price::text AS total, status FROM orders WHERE id = ${hoodieOrder}`;
    const itemText = (await hoodieItem.textContent()) ?? "";
    for (const expected of ["SUSTech Hoodie", `Quantity ${row?.quantity}`, `Total ${row?.total}`, "placed"]) {
      assert.ok(itemText.includes(expected), `"${itemText}" shows ${expected}`);
    }
    assert.equal(row?.total, "99.98");

    // A reload keeps the tab signed in (sessionStorage), orders and all.
    await page.reload();
    await page.getByText("Signed in as alice").waitFor();
    await orders
      .getByRole("listitem")
      .filter({ hasText: `Order #${hoodieOrder}` })
      .waitFor();

    // Stock changed elsewhere shows up by itself; ordering more than is left is refused in words.
    await sql`UPDATE products SET stock = 1 WHERE id = 3`;
    await product(page, "SUSTech Notebook")
      .getByText("1 in stock", { exact: true })
      .waitFor({ timeout: LIVE_STOCK_MS });
    await order(page, "SUSTech Notebook", 2);
    const refusal = await message(page, "alert", /Not enough stock/);
    assert.equal(refusal, "Not enough stock: 1 × SUSTech Notebook left, and you asked for 2.");
    assert.equal(await stockInDatabase(3), 1);
    assert.equal(await shownStock(page, "SUSTech Notebook"), 1);
    assert.equal(await orders.getByRole("listitem").count(), 2, "the refused order is not listed");

    // Cancel the hoodies: status cancelled, no Cancel button any more, the stock back.
    await hoodieItem.getByRole("button", { name: "Cancel" }).click();
    await message(page, "status", new RegExp(`Order #${hoodieOrder} cancelled`));
    assert.match((await hoodieItem.textContent()) ?? "", /cancelled/);
    assert.equal(await hoodieItem.getByRole("button", { name: "Cancel" }).count(), 0);
    assert.equal(await stockInDatabase(1), 500);
    assert.equal(await shownStock(page, "SUSTech Hoodie"), 500);

    // Log out: back to the login form, and the orders are gone from the page.
    await page.getByRole("button", { name: "Log out" }).click();
    await message(page, "status", /You are logged out/);
    await login.waitFor({ state: "visible" });
    assert.equal(await orders.isVisible(), false);
    assert.equal(await page.getByRole("button", { name: "Log out" }).isVisible(), false);

    // Throttling is a refusal in words too, with how long to wait.
    let throttled = "";
    for (let attempt = 1; attempt <= 8 && throttled === ""; attempt++) {
      await login.getByLabel("Username").fill("alice");
      await login.getByLabel("Password").fill(`wrong guess ${attempt}`);
      await login.getByRole("button", { name: "Log in" }).click();
      // The button is disabled while the call is out: enabled again means the answer is shown.
      await login.getByRole("button", { name: "Log in" }).and(page.locator(":enabled")).waitFor();
      const alert = (await page.getByRole("alert").textContent()) ?? "";
      if (/Too many failed logins/.test(alert)) throttled = alert;
      else assert.equal(alert, "Wrong username or password.");
    }
    assert.match(throttled, /^Too many failed logins\. Please try again in \d+ (seconds|minutes)\.$/);

    assert.deepEqual(problems(), [], "no CSP violation, uncaught error or other console error");
  } finally {
    await close();
  }
});

test("/docs (swagger-ui) still renders under the gateway's CSP", { timeout: 60_000 }, async () => {
  const { page, problems, close } = await watchedPage();
  try {
    await page.goto(`${site()}/docs`);
    await page.getByRole("heading", { name: /SUSTech Merch Store API/ }).waitFor();
    // An operation from openapi.yaml is listed: the spec loaded and rendered.
    await page.getByText("/products/{id}", { exact: true }).first().waitFor();
    assert.deepEqual(problems(), [], "no CSP violation, uncaught error or console error");
  } finally {
    await close();
  }
});
