import { ErrorReason } from "@merch/kit";
import type { Handlers, RestContext } from "../context.ts";
import { problem, sendProblem } from "../problems.ts";

export function systemRoutes(ctx: RestContext): Handlers {
  return {
    async getWelcome() {
      return { message: "Welcome to the SUSTech Merch Store!" };
    },
    async getHealth() {
      return { status: "ok", log_events: ctx.eventStats() };
    },
    async getReadiness(_req, reply) {
      const { ready, checks } = await ctx.readiness();
      if (!ready) {
        const refusal = problem(ErrorReason.NOT_READY, "a service the gateway needs is not serving", { checks });
        return sendProblem(reply, { problem: refusal, headers: {} });
      }
      return { status: "ready", checks };
    },
    async getMetrics(_req, reply) {
      return reply.type("text/plain; version=0.0.4; charset=utf-8").send(await ctx.metrics());
    },
    async getOpenApi(_req, reply) {
      return reply.type("application/yaml; charset=utf-8").send(ctx.specText);
    },
  };
}
