import { randomUUID } from "node:crypto";
import type { Server } from "node:http";
import type { Socket } from "node:net";
import type { Logger } from "@merch/kit";
import { type FastifyBaseLogger, type FastifyHttpOptions, LogController } from "fastify";
import type { GatewayConfig } from "./config.ts";
import { BODY_LIMIT } from "./problems.ts";

// The gateway's HTTP server: its timeouts, limits and request ids. What it does with a request is
// the plugins' (app.ts).

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

export function serverOptions(
  config: GatewayConfig,
  logger: Logger,
  /** Answers a request Node could not parse (request-events.ts answerClientError). */
  onClientError: (err: Error & { code?: string }, socket: Socket) => void,
): FastifyHttpOptions<Server> {
  return {
    loggerInstance: logger as FastifyBaseLogger,
    // Every request becomes a log-service event instead (request-events.ts), so requests get the
    // service's logger itself rather than a child logger each: one allocation less per request.
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: (parent) => parent,
    bodyLimit: BODY_LIMIT,
    // A hop count trusts that many proxies nearest to the gateway, never the client's own entries.
    trustProxy:
      typeof config.trustProxy === "number"
        ? (_address: string, hop: number) => hop < (config.trustProxy as number)
        : config.trustProxy,
    requestTimeout: config.http.requestTimeoutMs,
    // Node checks those timeouts only this often (30 s by default): a slow client is cut within a
    // second of its deadline instead.
    http: { connectionsCheckingInterval: 1000, headersTimeout: config.http.headersTimeoutMs },
    connectionTimeout: config.http.connectionTimeoutMs,
    keepAliveTimeout: config.http.keepAliveTimeoutMs,
    // Our own 503 answers the requests that arrive while closing (early-refusals.ts).
    return503OnClosing: false,
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
    },
    // A JSON body may not smuggle prototypes in.
    onProtoPoisoning: "error",
    onConstructorPoisoning: "error",
    // Requests Node could not even parse (oversized headers, a request line that is not HTTP, a
    // request that took too long to arrive) are answered as problem details too.
    clientErrorHandler: onClientError,
  };
}
