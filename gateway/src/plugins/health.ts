import { Code, ConnectError } from "@connectrpc/connect";
import { HealthCheckResponse_ServingStatus as Status } from "@merch/gen/grpc/health/v1/health_pb";
import { ErrorReason } from "@merch/kit";
import type { FastifyPluginAsync } from "fastify";
import type { DbClients } from "../clients.ts";
import type { EventLog } from "../event-log.ts";
import { problem, sendProblem } from "../problems.ts";
import type { OpenApiDocument } from "../spec.ts";
import { restRoutes } from "./rest-routes.ts";

// GET /healthz (the gateway is up; how its log pipeline does) and GET /readyz (the services it
// needs answer their health checks), as openapi.yaml describes them.

type HealthClient = DbClients["health"];

export interface HealthOptions {
  spec: OpenApiDocument;
  events: EventLog;
  /** db-service's and log-service's grpc.health.v1.Health. */
  db: HealthClient;
  log: HealthClient;
}

export const health: FastifyPluginAsync<HealthOptions> = async (app, { spec, events, db, log }) => {
  await app.register(restRoutes, {
    spec,
    handlers: {
      async getHealth() {
        return { status: "ok", log_events: events.stats() };
      },
      async getReadiness(_req, reply) {
        const [dbState, logState] = await Promise.all([serving(db), serving(log)]);
        const checks = { db_service: dbState, log_service: logState };
        if (dbState !== "SERVING" || logState !== "SERVING") {
          const refusal = problem(ErrorReason.NOT_READY, "a service the gateway needs is not serving", { checks });
          return sendProblem(reply, { problem: refusal, headers: {} });
        }
        return { status: "ready", checks };
      },
    },
  });
};

async function serving(client: HealthClient): Promise<"SERVING" | "NOT_SERVING" | "UNREACHABLE"> {
  try {
    const { status } = await client.check({ service: "" }, { timeoutMs: 1000 });
    return status === Status.SERVING ? "SERVING" : "NOT_SERVING";
  } catch (err) {
    return err instanceof ConnectError && err.code === Code.NotFound ? "NOT_SERVING" : "UNREACHABLE";
  }
}
