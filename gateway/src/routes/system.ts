import type { Client } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Health } from "@merch/gen/grpc/health/v1/health_pb";
import { HealthCheckResponse_ServingStatus as Status } from "@merch/gen/grpc/health/v1/health_pb";
import type { GatewayContext, Handlers } from "../context.ts";
import { ProblemError, problem } from "../problems.ts";

type CheckStatus = "SERVING" | "NOT_SERVING" | "UNREACHABLE";

async function check(client: Client<typeof Health>): Promise<CheckStatus> {
  try {
    const { status } = await client.check({ service: "" }, { timeoutMs: 1000 });
    return status === Status.SERVING ? "SERVING" : "NOT_SERVING";
  } catch (err) {
    if (err instanceof ConnectError && err.code === Code.NotFound) return "NOT_SERVING";
    return "UNREACHABLE";
  }
}

export function systemRoutes(ctx: GatewayContext): Handlers {
  return {
    async getWelcome() {
      return { message: "Welcome to the SUSTech Merch Store!" };
    },
    async getHealth() {
      return { status: "ok", log_events: ctx.events.stats() };
    },
    async getReadiness() {
      const [db, log] = await Promise.all([check(ctx.db.health), check(ctx.log.health)]);
      const checks = { db_service: db, log_service: log };
      if (db !== "SERVING" || log !== "SERVING") {
        throw new ProblemError(problem(503, "not_ready", "a service the gateway needs is not serving", { checks }));
      }
      return { status: "ready", checks };
    },
    async getOpenApi(_req, reply) {
      return reply.type("application/yaml; charset=utf-8").send(ctx.specText);
    },
  };
}
