import type { Handlers, RestContext } from "../context.ts";

export function systemRoutes(ctx: RestContext): Handlers {
  return {
    async getWelcome() {
      return { message: "Welcome to the SUSTech Merch Store!" };
    },
    async getMetrics(_req, reply) {
      return reply.type("text/plain; version=0.0.4; charset=utf-8").send(await ctx.metrics());
    },
    async getOpenApi(_req, reply) {
      return reply.type("application/yaml; charset=utf-8").send(ctx.specText);
    },
  };
}
