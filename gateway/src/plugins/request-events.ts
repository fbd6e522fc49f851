import type { Socket } from "node:net";
import { ErrorReason, reasonName } from "@merch/kit";
import type { FastifyPluginAsync } from "fastify";
import fp from "fastify-plugin";
import type { EventLog } from "../event-log.ts";
import { CLIENT_ERRORS, problem } from "../problems.ts";

// Every answer carries its request id (the caller's X-Request-Id when it is a sane one, see
// server-options.ts) and becomes one log-service event, sent in the background.

export interface RequestEventsOptions {
  events: EventLog;
}

const plugin: FastifyPluginAsync<RequestEventsOptions> = async (app, { events }) => {
  app.addHook("onRequest", async (req, reply) => {
    reply.header("x-request-id", req.id);
  });
  app.addHook("onResponse", async (req, reply) => {
    events.emit({
      level: reply.statusCode >= 500 ? "error" : reply.statusCode >= 400 ? "warn" : "info",
      event: "http.request",
      message: `${req.method} ${req.routeOptions.url ?? "(no route)"} ${reply.statusCode}`,
      requestId: req.id,
      userId: req.userId ?? req.auth?.subject.userId,
      http: {
        method: req.method,
        path: req.url.split("?")[0] ?? "/",
        status: reply.statusCode,
        durationMs: reply.elapsedTime,
      },
    });
  });
};

export const requestEvents = fp(plugin, { name: "request-events" });

/**
 * Answers a request Node could not parse, straight on the socket (there is no request object),
 * as problem details, and logs it like any other answer. Fastify takes it as its
 * clientErrorHandler (server-options.ts): no hook runs for these.
 */
export function answerClientError(err: Error & { code?: string }, socket: Socket, events: EventLog): void {
  const [reason, detail] = CLIENT_ERRORS[err.code ?? ""] ?? [ErrorReason.BAD_REQUEST, "the request is not valid HTTP"];
  const p = problem(reason, detail);
  if (socket.writable) {
    const body = JSON.stringify(p);
    socket.end(
      // No hook runs for these answers: helmet's nosniff is written here by hand.
      `HTTP/1.1 ${p.status} ${p.title}\r\nContent-Type: application/problem+json\r\nX-Content-Type-Options: nosniff\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  } else {
    socket.destroy();
  }
  events.emit({
    level: "warn",
    event: "http.request",
    message: `unparsable request ${p.status} (${reasonName(reason)})`,
    http: { method: "UNKNOWN", path: "-", status: p.status, durationMs: 0 },
  });
}
