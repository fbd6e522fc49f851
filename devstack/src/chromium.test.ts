import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import type { Browser } from "playwright-core";
import { launchChromium } from "./chromium.ts";

const PAGE = `<!doctype html>
<html lang="en">
  <head><meta charset="utf-8"><title>Devstack check</title></head>
  <body>
    <h1>SUSTech Merch</h1>
    <button type="button" id="add">Add to cart</button>
    <p role="status" id="status"></p>
    <script>
      document.getElementById("add").addEventListener("click", () => {
        document.getElementById("status").textContent = "Added 1 hoodie to your cart";
      });
    </script>
  </body>
</html>
`;

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

let site: Server | undefined;
let siteUrl = "";
let browser: Browser | undefined;
let launchMs = 0;

before(
  async () => {
    site = createServer((req, res) => {
      if (req.url === "/") res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(PAGE);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => site?.listen(0, "127.0.0.1", resolve));
    siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}/`;
    const started = performance.now();
    browser = await launchChromium();
    launchMs = performance.now() - started;
  },
  { timeout: 12 * 60_000 },
);

after(
  async () => {
    await browser?.close();
    site?.closeAllConnections();
    await new Promise((resolve) => site?.close(resolve));
  },
  { timeout: 30_000 },
);

test("clicking the button by its accessible name updates the status, and the page screenshots", {
  timeout: 60_000,
}, async (t) => {
  assert.ok(browser);
  t.diagnostic(`chromium ${browser.version()} launched in ${Math.round(launchMs)} ms`);
  const page = await browser.newPage();
  page.setDefaultTimeout(15_000);
  try {
    await page.goto(siteUrl, { waitUntil: "load" });
    assert.equal(await page.title(), "Devstack check");

    await page.getByRole("button", { name: "Add to cart" }).click();
    const status = page.getByRole("status");
    await status.filter({ hasText: "Added" }).waitFor();
    assert.equal(await status.textContent(), "Added 1 hoodie to your cart");

    const png = await page.screenshot({ fullPage: true });
    assert.deepEqual(png.subarray(0, 8), PNG_SIGNATURE);
    // The IHDR chunk follows the signature: width and height as big-endian 32-bit integers.
    assert.equal(png.toString("latin1", 12, 16), "IHDR");
    assert.ok(png.readUInt32BE(16) >= 100 && png.readUInt32BE(20) >= 100, "screenshot has real dimensions");
    assert.ok(png.length > 2000, `a rendered page is more than a blank PNG (${png.length} bytes)`);
  } finally {
    await page.close();
  }
});
