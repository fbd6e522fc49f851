import type { IncomingHttpHeaders } from "node:http";
import {
  context,
  endSpan,
  Gauge,
  Histogram,
  propagation,
  SECONDS_BUCKETS,
  ServiceMetrics,
  type Span,
  SpanKind,
  trace,
  tracer,
} from "@merch/kit";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { EventLogStats } from "./event-log.ts";

declare module "fastify" {
  interface FastifyRequest {
    /** The request's server span (tracing). */
    span?: Span;
  }
}

/** The gateway's metrics: HTTP (REST and ShopService alike), its log pipeline, its product cache. */
export class GatewayMetrics extends ServiceMetrics {
  readonly httpDuration = new Histogram({
    name: "http_server_request_duration_seconds",
    help: "Duration of HTTP requests answered, by method, route and status code.",
    labelNames: ["http_request_method", "http_route", "http_response_status_code"],
    buckets: SECONDS_BUCKETS,
    registers: [this.registry],
  });
  readonly httpActive = new Gauge({
    name: "http_server_active_requests",
    help: "HTTP requests being answered right now.",
    registers: [this.registry],
  });

  constructor(events: () => EventLogStats, following: () => boolean, dbCallsWaiting: () => number) {
    super("gateway");
    this.gauge("log_queue_queued", "Log events waiting to be sent to log-service.", () => events().queued);
    this.gauge(
      "log_queue_in_flight",
      "Log events sent to log-service, not yet acknowledged.",
      () => events().in_flight,
    );
    this.counter("log_queue_delivered_total", "Log events log-service acknowledged.", () => events().delivered);
    this.counter(
      "log_queue_dropped_total",
      "Log events that did not fit the buffer while log-service was away.",
      () => events().dropped,
    );
    this.gauge(
      "product_cache_following",
      "1 while product pages follow db-service's changes; 0 while they age up to the TTL.",
      () => (following() ? 1 : 0),
    );
    this.gauge(
      "db_calls_waiting",
      "Calls to db-service waiting for one of the streams db-service allows at once.",
      dbCallsWaiting,
    );
  }
}

const headerGetter = {
  get: (carrier: IncomingHttpHeaders, key: string) => {
    const value = carrier[key];
    return Array.isArray(value) ? value[0] : value;
  },
  keys: (carrier: IncomingHttpHeaders) => Object.keys(carrier),
};

/**
 * A server span and the HTTP metrics for every request, REST and ShopService alike. The span is
 * the active context for everything the request does (its calls to db-service carry it on), so
 * one request is one trace.
 */
export function observeRequests(app: FastifyInstance, metrics: GatewayMetrics): void {
  app.addHook("onRequest", (req: FastifyRequest, _reply: FastifyReply, done: () => void) => {
    metrics.httpActive.inc();
    const parent = propagation.extract(context.active(), req.headers, headerGetter);
    const span = tracer().startSpan(
      `${req.method} ${req.routeOptions.url ?? "unknown route"}`,
      {
        kind: SpanKind.SERVER,
        attributes: { "http.request.method": req.method, "url.path": req.url.split("?")[0] ?? "/" },
      },
      parent,
    );
    req.span = span;
    // Fastify runs the rest of the request from done(): inside this context, so it carries on.
    context.with(trace.setSpan(parent, span), done);
  });
  app.addHook("onResponse", async (req, reply) => {
    metrics.httpActive.dec();
    const route = req.routeOptions.url ?? "unknown route";
    metrics.httpDuration.observe(
      { http_request_method: req.method, http_route: route, http_response_status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
    const span = req.span;
    if (span) {
      span.setAttribute("http.route", route);
      span.setAttribute("http.response.status_code", reply.statusCode);
      endSpan(span, reply.statusCode >= 500 ? `HTTP ${reply.statusCode}` : undefined);
    }
  });
}
