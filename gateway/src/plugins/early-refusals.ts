import { ErrorReason, rpcError } from "@merch/kit";
import type { FastifyPluginAsync } from "fastify";
import fp from "fastify-plugin";
import { problem, sendProblem } from "../problems.ts";

// Requests refused before any route sees them: those arriving while the gateway shuts down, and
// paths longer than any route of ours.

/** Longer paths are refused with 414 before routing: no route of ours comes close. */
const MAX_PATH = 2048;

export interface EarlyRefusalsOptions {
  /** True once the gateway has begun to close (Gateway.close). */
  closing(): boolean;
}

const plugin: FastifyPluginAsync<EarlyRefusalsOptions> = async (app, { closing }) => {
  app.addHook("onRequest", async (req, reply) => {
    if (closing()) {
      reply.header("connection", "close");
      throw rpcError(ErrorReason.SHUTTING_DOWN, "the gateway is shutting down; retry on another replica or shortly");
    }
    if ((req.url.split("?")[0] ?? "").length > MAX_PATH) {
      return sendProblem(reply, {
        problem: problem(ErrorReason.URI_TOO_LONG, `request paths are limited to ${MAX_PATH} characters`),
        headers: {},
      });
    }
  });
};

export const earlyRefusals = fp(plugin, { name: "early-refusals" });
