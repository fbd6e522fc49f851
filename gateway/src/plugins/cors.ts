import { cors as connectCors } from "@connectrpc/connect";
import fastifyCors from "@fastify/cors";
import type { FastifyPluginAsync } from "fastify";
import fp from "fastify-plugin";

// Cross-origin calls, REST and Connect alike, from the origins CORS_ORIGINS names; none when it
// names none.

export interface CorsOptions {
  /** CORS_ORIGINS: `*` for any origin. */
  origins: readonly string[];
}

const plugin: FastifyPluginAsync<CorsOptions> = async (app, { origins }) => {
  if (origins.length === 0) return;
  await app.register(fastifyCors, {
    origin: origins.includes("*") ? true : [...origins],
    methods: [...new Set([...connectCors.allowedMethods, "GET", "POST", "PATCH"])],
    allowedHeaders: [...connectCors.allowedHeaders, "Authorization", "Idempotency-Key", "X-Request-Id"],
    exposedHeaders: [
      ...connectCors.exposedHeaders,
      "Location",
      "Retry-After",
      "X-Request-Id",
      "Idempotent-Replayed",
      "WWW-Authenticate",
    ],
    maxAge: 7200,
    // Preflights answer 204, for REST and Connect alike.
    optionsSuccessStatus: 204,
    strictPreflight: false,
  });
};

export const cors = fp(plugin, { name: "cors" });
