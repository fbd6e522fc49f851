import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { DualHandler } from "./listener.ts";
import {
  contextFromHeaders,
  endSpan,
  injectHeaders,
  isExporting,
  SpanKind,
  trace,
  context as traceContext,
  tracer,
} from "./tracing.ts";

// Prometheus metrics, one registry per service, named after OpenTelemetry's semantic
// conventions where they exist (rpc.server.duration -> rpc_server_duration_seconds), and
// the interceptors that time every RPC and trace it.

/** Latency buckets in seconds, from a cached read (0.5 ms) to a slow commit (10 s). */
// The metric types, for services' own metrics: prom-client stays kit's dependency alone.
export { Counter, Gauge, Histogram };

export const SECONDS_BUCKETS = [0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000].map(
  (ms) => ms / 1000,
);

export class ServiceMetrics {
  readonly registry = new Registry();
  readonly rpcDuration: Histogram<"rpc_system" | "rpc_service" | "rpc_method" | "rpc_connect_rpc_error_code">;
  readonly rpcActive: Gauge<"rpc_service" | "rpc_method">;

  readonly service: string;

  constructor(service: string) {
    this.service = service;
    collectDefaultMetrics({ register: this.registry });
    // prom-client names these gauges with a counter's "_total"; promtool rightly objects, and the
    // same numbers are there without the suffix (nodejs_active_handles, ...).
    for (const name of [
      "nodejs_active_handles_total",
      "nodejs_active_requests_total",
      "nodejs_active_resources_total",
    ]) {
      this.registry.removeSingleMetric(name);
    }
    this.rpcDuration = new Histogram({
      // OpenTelemetry's rpc.server.duration, in the base unit Prometheus asks for.
      name: "rpc_server_duration_seconds",
      help: "Duration of RPCs served, by service, method and Connect error code (empty for success).",
      labelNames: ["rpc_system", "rpc_service", "rpc_method", "rpc_connect_rpc_error_code"],
      buckets: SECONDS_BUCKETS,
      registers: [this.registry],
    });
    this.rpcActive = new Gauge({
      name: "rpc_server_active_requests",
      help: "RPCs being served right now.",
      labelNames: ["rpc_service", "rpc_method"],
      registers: [this.registry],
    });
  }

  /** A gauge read from `read` whenever Prometheus scrapes. */
  gauge(name: string, help: string, read: () => number): void {
    new Gauge({
      name,
      help,
      registers: [this.registry],
      collect() {
        this.set(read());
      },
    });
  }

  /**
   * A counter whose total is kept elsewhere as a plain number (cheaper on a hot path than a
   * metric's own increment) and read whenever Prometheus scrapes.
   */
  counter(name: string, help: string, read: () => number): void {
    new Counter({
      name,
      help,
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  }

  /** The Prometheus text for GET /metrics. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  /** GET /metrics for the internal services' dual HTTP/1.1 and h2c listener. */
  handler(): DualHandler {
    return (_req, res) => {
      void this.text().then(
        (body) => {
          res.setHeader("content-type", this.registry.contentType);
          res.statusCode = 200;
          res.end(body);
        },
        () => {
          res.statusCode = 500;
          res.end();
        },
      );
    };
  }
}

const errorCode = (err: unknown) =>
  (ConnectError.from(err).code === Code.Canceled ? "canceled" : Code[ConnectError.from(err).code]).replace(
    /[A-Z]/g,
    (c, i) => (i ? "_" : "") + c.toLowerCase(),
  );

/**
 * Every RPC served: a server span (its parent the caller's traceparent, so one request is one
 * trace across the services), its duration and the RPCs in flight. When spans are not exported,
 * only the caller's context is carried on (for log lines and onward calls): no span is made.
 */
export function observeServer(metrics: ServiceMetrics): Interceptor {
  return (next) => async (req) => {
    const labels = { rpc_service: req.service.typeName, rpc_method: req.method.name };
    const parent = req.header.has("traceparent") ? contextFromHeaders(req.header) : undefined;
    const span = isExporting()
      ? tracer().startSpan(
          `${req.service.typeName}/${req.method.name}`,
          {
            kind: SpanKind.SERVER,
            attributes: {
              "rpc.system": "connect_rpc",
              "rpc.service": labels.rpc_service,
              "rpc.method": labels.rpc_method,
            },
          },
          parent,
        )
      : undefined;
    const active = span ? trace.setSpan(parent ?? traceContext.active(), span) : parent;
    const started = performance.now();
    metrics.rpcActive.inc(labels);
    let code = "";
    try {
      return await (active ? traceContext.with(active, () => next(req)) : next(req));
    } catch (err) {
      code = errorCode(err);
      span?.setAttribute("rpc.connect_rpc.error_code", code);
      throw err;
    } finally {
      metrics.rpcActive.dec(labels);
      metrics.rpcDuration.observe(
        { ...labels, rpc_system: "connect_rpc", rpc_connect_rpc_error_code: code },
        (performance.now() - started) / 1000,
      );
      if (span) endSpan(span, code === "" ? undefined : code);
    }
  };
}

/**
 * Every RPC made: a client span, and the traceparent that makes the callee's span its child.
 * When spans are not exported, the active context's traceparent (if any) is passed on as it is.
 */
export function traceClient(): Interceptor {
  return (next) => async (req) => {
    if (!isExporting()) {
      injectHeaders(req.header);
      return next(req);
    }
    const span = tracer().startSpan(`${req.service.typeName}/${req.method.name}`, {
      kind: SpanKind.CLIENT,
      attributes: { "rpc.system": "connect_rpc", "rpc.service": req.service.typeName, "rpc.method": req.method.name },
    });
    injectHeaders(req.header, trace.setSpan(traceContext.active(), span));
    try {
      const res = await next(req);
      span.end();
      return res;
    } catch (err) {
      span.setAttribute("rpc.connect_rpc.error_code", errorCode(err));
      endSpan(span, err);
      throw err;
    }
  };
}
