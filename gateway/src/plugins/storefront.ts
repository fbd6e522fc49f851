import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { FastifyPluginAsync } from "fastify";
import { sendAsset, staticAsset } from "./static-asset.ts";

// The storefront page (gateway/storefront): a static page and its bundle, served at /shop/ under a
// Content-Security-Policy stricter than the rest of the gateway's (which must let swagger-ui's
// inline styles through). They are operational pages like /docs, not routes of the REST API.

const STOREFRONT_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "storefront");

/** Each path under /shop/ and the file it serves; the bundle is committed (npm run build:storefront). */
const ASSETS: Record<string, { file: string; type: string }> = {
  "": { file: "index.html", type: "text/html; charset=utf-8" },
  "shop.css": { file: "shop.css", type: "text/css; charset=utf-8" },
  "shop.js": { file: "dist/shop.js", type: "text/javascript; charset=utf-8" },
};

/** The files the gateway reads at start-up (the image must hold them: test/deploy checks). */
export const STOREFRONT_FILES: readonly string[] = Object.values(ASSETS).map((a) => join(STOREFRONT_DIR, a.file));

/** Nothing but the page's own script, style and API calls; no inline code, no framing. */
export const STOREFRONT_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
  "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/**
 * Registers GET (and HEAD) /shop/ and its assets, read and compressed once here (static-asset.ts), and /shop redirecting to /shop/
 * (the page's relative URLs need the slash). A missing file stops the gateway at start-up.
 */
export const storefront: FastifyPluginAsync = async (app) => {
  app.get("/shop", (req, reply) => {
    const query = req.url.indexOf("?");
    return reply.redirect(`/shop/${query < 0 ? "" : req.url.slice(query)}`, 301);
  });
  for (const [path, { file, type }] of Object.entries(ASSETS)) {
    const asset = await staticAsset(readFileSync(join(STOREFRONT_DIR, file)), type);
    app.get(`/shop/${path}`, (req, reply) => {
      // Replaces the gateway-wide policy helmet set for this response.
      reply.header("content-security-policy", STOREFRONT_CSP);
      // Not fingerprinted file names: a browser asks again each time, and an unchanged file costs a 304.
      reply.header("cache-control", "no-cache");
      return sendAsset(asset, req, reply);
    });
  }
};
