import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import Fastify, { type FastifyInstance } from "fastify";
import { chooseEncoding } from "./static-asset.ts";
import { STOREFRONT_FILES, storefront } from "./storefront.ts";

// The storefront's static files as the gateway serves them (issue 22.4): compressed when the
// client accepts it, with a validator per form, 304 when unchanged. The plugin runs in a real
// Fastify; the store around it is test/e2e/storefront.test.ts's.

let app: FastifyInstance;
const script = readFileSync(STOREFRONT_FILES.find((f) => f.endsWith("shop.js")) ?? "");

before(async () => {
  app = Fastify();
  await app.register(storefront);
  await app.ready();
});
after(() => app?.close());

const get = (url: string, headers: Record<string, string> = {}, method: "GET" | "HEAD" = "GET") =>
  app.inject({ method, url, headers });

test("without Accept-Encoding the script is sent as it is, with a validator and Vary", async () => {
  const res = await get("/shop/shop.js");
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers["content-encoding"], undefined);
  assert.deepEqual(res.rawPayload, script);
  assert.equal(res.headers.vary, "accept-encoding");
  assert.match(String(res.headers.etag), /^"[\w-]+"$/);
});

test("a browser's Accept-Encoding gets Brotli, gzip when that is all it takes; each decodes to the file", async (t) => {
  const br = await get("/shop/shop.js", { "accept-encoding": "gzip, deflate, br, zstd" });
  assert.equal(br.statusCode, 200);
  assert.equal(br.headers["content-encoding"], "br");
  assert.equal(br.headers["content-type"], "text/javascript; charset=utf-8");
  assert.equal(Number(br.headers["content-length"]), br.rawPayload.length);
  assert.deepEqual(brotliDecompressSync(br.rawPayload), script);
  const gz = await get("/shop/shop.js", { "accept-encoding": "gzip" });
  assert.equal(gz.headers["content-encoding"], "gzip");
  assert.deepEqual(gunzipSync(gz.rawPayload), script);
  assert.ok(br.rawPayload.length < script.length / 3, `${br.rawPayload.length} bytes with Brotli`);
  t.diagnostic(`shop.js: ${script.length} bytes, ${gz.rawPayload.length} gzipped, ${br.rawPayload.length} with Brotli`);
  for (const path of ["/shop/", "/shop/shop.css"]) {
    const page = await get(path, { "accept-encoding": "br" });
    assert.equal(page.headers["content-encoding"], "br", path);
  }
});

test("each form has its own ETag, and If-None-Match of the form asked for is a 304", async () => {
  const forms = new Map<string, string>();
  for (const encoding of ["br", "gzip", "identity"]) {
    const res = await get("/shop/shop.js", { "accept-encoding": encoding });
    forms.set(encoding, String(res.headers.etag));
    const again = await get("/shop/shop.js", {
      "accept-encoding": encoding,
      "if-none-match": String(res.headers.etag),
    });
    assert.equal(again.statusCode, 304, encoding);
    assert.equal(again.rawPayload.length, 0);
    assert.equal(again.headers.vary, "accept-encoding");
    const weak = await get("/shop/shop.js", {
      "accept-encoding": encoding,
      "if-none-match": `"x", W/${res.headers.etag}`,
    });
    assert.equal(weak.statusCode, 304, `${encoding}, weak and in a list`);
  }
  assert.equal(new Set(forms.values()).size, 3, "three forms, three validators");
  // A cache holding the gzip form asks for Brotli: the validator does not match, the body comes.
  const other = await get("/shop/shop.js", { "accept-encoding": "br", "if-none-match": forms.get("gzip") ?? "" });
  assert.equal(other.statusCode, 200);
  assert.equal(other.headers["content-encoding"], "br");
});

test("HEAD says the encoded length and sends nothing", async () => {
  const res = await get("/shop/shop.js", { "accept-encoding": "br" }, "HEAD");
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers["content-encoding"], "br");
  assert.ok(Number(res.headers["content-length"]) < script.length);
  assert.equal(res.rawPayload.length, 0);
});

test("Accept-Encoding is read with its q-values", () => {
  const all = ["br", "gzip", "identity"] as const;
  assert.equal(chooseEncoding(undefined, all), "identity");
  assert.equal(chooseEncoding("", all), "identity");
  assert.equal(chooseEncoding("gzip, br", all), "br");
  assert.equal(chooseEncoding("br;q=0, gzip", all), "gzip");
  assert.equal(chooseEncoding("br;q=0.5, gzip;q=0.8", all), "gzip");
  assert.equal(chooseEncoding("BR", all), "br");
  assert.equal(chooseEncoding("*", all), "br");
  assert.equal(chooseEncoding("gzip;q=0, br;q=0", all), "identity");
  assert.equal(chooseEncoding("deflate, zstd", all), "identity");
  assert.equal(chooseEncoding("br", ["gzip", "identity"]), "identity");
});
