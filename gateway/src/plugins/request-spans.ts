import type { IncomingHttpHeaders } from "node:http";
import { context, endSpan, isExporting, propagation, type Span, SpanKind, trace, tracer } from "@merch/kit";
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import type { GatewayMetrics } from "../observe.ts";

declare module "fastify" {
  interface FastifyRequest {
    /** The request's server span (tracing). */
    span?: Span;
  }
}

export interface RequestSpansOptions {
  metrics: GatewayMetrics;
}

const headerGetter = {
  get: (carrier: IncomingHttpHeaders, key: string) => {
    const value = carrier[key];
    return Array.isArray(value) ? value[0] : value;
  },
  keys: (carrier: IncomingHttpHeaders) => Object.keys(carrier),
};

/** The path of a request target, without its query. */
function pathOf(url: string): string {
  const query = url.indexOf("?");
  return query === -1 ? url : url.slice(0, query);
}

/**
 * A server span and the HTTP metrics for every request, REST and ShopService alike. The span is
 * the active context for everything the request does (its calls to db-service carry it on), so
 * one request is one trace.
 */
const plugin: FastifyPluginAsync<RequestSpansOptions> = async (app, { metrics }) => {
  // Declared up front, so that every request object keeps one shape whether it gets a span or not.
  app.decorateRequest("span", undefined);
  app.addHook("onRequest", (req: FastifyRequest, _reply: FastifyReply, done: () => void) => {
    metrics.httpActive.inc();
    const traced = req.headers.traceparent !== undefined;
    if (!isExporting()) {
      // No span to make: only a caller's trace context is carried on, to db-service and the logs.
      if (traced) context.with(propagation.extract(context.active(), req.headers, headerGetter), done);
      else done();
      return;
    }
    const parent = traced ? propagation.extract(context.active(), req.headers, headerGetter) : context.active();
    const span = tracer().startSpan(
      `${req.method} ${req.routeOptions.url ?? "unknown route"}`,
      {
        kind: SpanKind.SERVER,
        attributes: { "http.request.method": req.method, "url.path": pathOf(req.url) },
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
};

export const requestSpans = fp(plugin, { name: "request-spans" });
