import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, createContextValues, type Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Health } from "@merch/gen/grpc/health/v1/health_pb";
import * as reflectionV1 from "@merch/gen/grpc/reflection/v1/reflection_pb";
import * as reflectionV1alpha from "@merch/gen/grpc/reflection/v1alpha/reflection_pb";
import type { Logger } from "pino";
import { validation } from "./errors.ts";
import { HealthRegistry } from "./health.ts";
import { type DualHandler, listenDual } from "./listener.ts";
import { observeServer, type ServiceMetrics } from "./metrics.ts";
import { type MetricsListen, startMetricsServer } from "./metrics-server.ts";
import { registerReflection } from "./reflection.ts";
import { kPeerAddress, RefusalLog, serviceCredentialGate } from "./service-credential.ts";

export interface RpcServerOptions {
  port: number;
  host?: string;
  /** The services `routes` registers; health and reflection report exactly these. */
  services: readonly DescService[];
  routes: (router: ConnectRouter) => void;
  /**
   * Every call needs this credential (see service-credential.ts), but those of `openServices`,
   * health and reflection.
   */
  serviceCredential: string | undefined;
  openServices?: readonly DescService[];
  logger: Logger;
  interceptors?: Interceptor[];
  /** Largest request message accepted, in bytes. */
  readMaxBytes?: number;
  /** Plain HTTP GET endpoints next to the RPCs, by path. */
  httpRoutes?: Readonly<Record<string, DualHandler>>;
  /** The service's metrics: every RPC is timed into them, and GET /metrics serves them on `metricsListen`. */
  metrics: ServiceMetrics;
  /** Where /metrics is served: never the RPC port (metrics-server.ts). */
  metricsListen: MetricsListen;
}

export interface RpcServer {
  readonly port: number;
  readonly metricsPort: number;
  readonly health: HealthRegistry;
  /** Aborted when the server starts to shut down, so long-lived streams can wrap up. */
  readonly shutdownSignal: AbortSignal;
  close(graceMs?: number): Promise<void>;
}

/**
 * One port that answers gRPC, gRPC-Web and Connect (JSON and binary) over HTTP/1.1 and h2c,
 * with gRPC health checking and server reflection next to the given services.
 */
export async function startRpcServer(opts: RpcServerOptions): Promise<RpcServer> {
  const health = new HealthRegistry(opts.services.map((s) => s.typeName));
  const shutdown = new AbortController();
  const refusals = new RefusalLog(opts.logger);
  const handler = connectNodeAdapter({
    routes(router) {
      opts.routes(router);
      health.register(router);
      registerReflection(router, opts.services);
    },
    // The credential is checked from the headers, before the body is read.
    requestGate: serviceCredentialGate(
      opts.serviceCredential,
      [...(opts.openServices ?? []), Health, reflectionV1.ServerReflection, reflectionV1alpha.ServerReflection],
      refusals,
    ),
    contextValues: (req) => createContextValues().set(kPeerAddress, req.socket?.remoteAddress ?? "unknown"),
    interceptors: [observeServer(opts.metrics), logErrors(opts.logger), ...(opts.interceptors ?? []), ...validation()],
    shutdownSignal: shutdown.signal,
    readMaxBytes: opts.readMaxBytes ?? 4 * 1024 * 1024,
    // A caller that asks for more than a minute is almost certainly wrong.
    maxTimeoutMs: 60_000,
    fallback(req, res) {
      const path = (req.url ?? "/").split("?")[0] ?? "/";
      const route = opts.httpRoutes?.[path];
      if (route && (req.method === "GET" || req.method === "HEAD")) return route(req, res);
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found\n");
    },
  });
  const listener = await listenDual(handler, {
    port: opts.port,
    ...(opts.host === undefined ? {} : { host: opts.host }),
  });
  opts.logger.info({ port: listener.port }, "listening (gRPC, gRPC-Web, Connect; HTTP/1.1 and h2c)");
  const metricsServer = await startMetricsServer(opts.metricsListen, opts.metrics, opts.logger).catch(
    async (err: unknown) => {
      await listener.close(0);
      throw err;
    },
  );
  return {
    port: listener.port,
    metricsPort: metricsServer.port,
    health,
    shutdownSignal: shutdown.signal,
    async close(graceMs = 10_000) {
      health.set("NOT_SERVING");
      shutdown.abort();
      refusals.flush();
      await Promise.all([listener.close(graceMs), metricsServer.close()]);
    },
  };
}

/** Logs failed calls: client mistakes at debug, server faults at error. */
function logErrors(logger: Logger): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      logFailure(logger, req.url, err);
      throw err;
    }
  };
}

/**
 * Logs one failed call, or one refused item of a batched call (PlaceOrders answers each order on
 * its own, so its refusals never reach logErrors): client mistakes at debug, server faults at error.
 */
export function logFailure(logger: Logger, procedure: string, err: unknown): void {
  const ce = ConnectError.from(err);
  const serverFault = [Code.Internal, Code.Unknown, Code.DataLoss, Code.Unavailable].includes(ce.code);
  logger[serverFault ? "error" : "debug"](
    { procedure, code: Code[ce.code], err: serverFault ? err : undefined },
    ce.rawMessage,
  );
}
