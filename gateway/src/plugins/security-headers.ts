import { IncomingMessage, ServerResponse } from "node:http";
import { Socket } from "node:net";
import type { FastifyPluginAsync } from "fastify";
import fp from "fastify-plugin";
import helmet, { type HelmetOptions } from "helmet";

// helmet's headers on every answer, worked out once: @fastify/helmet ran helmet's middleware on
// every request (3 % of the gateway's CPU on an order, 5 % on ShopService; bench/results.md).

const OPTIONS: HelmetOptions = {
  contentSecurityPolicy: {
    directives: {
      defaultSrc: ["'self'"],
      scriptSrc: ["'self'"],
      // swagger-ui sets element styles from its scripts.
      styleSrc: ["'self'", "'unsafe-inline'"],
      imgSrc: ["'self'", "data:"],
      connectSrc: ["'self'"],
      objectSrc: ["'none'"],
      frameAncestors: ["'none'"],
      baseUri: ["'self'"],
      formAction: ["'self'"],
      // The gateway speaks plain HTTP: upgrading its pages' requests to https breaks them for
      // every browser not on localhost (/docs loaded no script or style).
      upgradeInsecureRequests: null,
    },
  },
  // The API is called from other origins when CORS_ORIGINS allows it.
  crossOriginResourcePolicy: { policy: "cross-origin" },
};

const plugin: FastifyPluginAsync = async (app) => {
  const headers = helmetHeaders(OPTIONS);
  app.addHook("onRequest", async (_req, reply) => {
    reply.headers(headers);
  });
};

/** helmet's headers for the whole gateway; a page with a policy of its own replaces it (storefront). */
export const securityHeaders = fp(plugin, { name: "security-headers" });

/** The headers helmet sets with these options, taken from one run of its middleware. */
function helmetHeaders(options: HelmetOptions): Record<string, string> {
  const req = new IncomingMessage(new Socket());
  const res = new ServerResponse(req);
  let failed: unknown;
  helmet(options)(req, res, (err?: unknown) => {
    failed = err;
  });
  if (failed) throw failed;
  return Object.fromEntries(
    Object.entries(res.getHeaders()).map(([name, value]) => [
      name,
      Array.isArray(value) ? value.join(", ") : String(value),
    ]),
  );
}
