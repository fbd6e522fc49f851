import {
  type Context,
  context,
  INVALID_SPAN_CONTEXT,
  type Link,
  propagation,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  TraceFlags,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import type { Sampler, TracerProvider } from "@opentelemetry/sdk-trace";

// The SDK and the OTLP exporter are loaded only when spans are exported: a service that does
// not export keeps some 2.4 MB of heap and 7 MB resident that they would cost it.
type Sdk = typeof import("@opentelemetry/sdk-trace");

// Traces, configured by the standard OTEL_* variables only. Context propagation (W3C
// traceparent) is always on, so a caller's trace goes through every service; spans are recorded
// and exported (OTLP over HTTP, protobuf) only when an endpoint is set.

export type { Context, Link, Span, SpanContext };
export { context, propagation, SpanKind, SpanStatusCode, trace };

/**
 * The OTEL_* variables that set tracing up (read here and by the OTLP exporter). A variable set
 * but empty counts as unset, as the OpenTelemetry specification asks, so that compose can pass
 * `${OTEL_EXPORTER_OTLP_ENDPOINT:-}` through.
 */
export const TRACING_ENV = [
  "OTEL_EXPORTER_OTLP_ENDPOINT",
  "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
  "OTEL_SERVICE_NAME",
  "OTEL_RESOURCE_ATTRIBUTES",
  "OTEL_TRACES_SAMPLER",
  "OTEL_TRACES_SAMPLER_ARG",
  "OTEL_TRACES_EXPORTER",
  "OTEL_SDK_DISABLED",
] as const;

function setting(env: NodeJS.ProcessEnv, name: (typeof TRACING_ENV)[number]): string | undefined {
  return env[name]?.trim() || undefined;
}

/**
 * Spans go out in an OTLP request once EXPORT_BATCH_SPANS wait, or EXPORT_DELAY_MS after the
 * first: a request costs the same fixed HTTP work whatever it carries. Each span is encoded when
 * it ends (span-export.ts); up to EXPORT_QUEUE_SPANS wait as bytes while a request is out (the
 * SDK's default, which bounds the memory they take when the collector is away); beyond that new
 * spans are dropped, never the service slowed down.
 */
const EXPORT_DELAY_MS = 1000;
const EXPORT_BATCH_SPANS = 1024;
const EXPORT_QUEUE_SPANS = 2048;

let provider: TracerProvider | undefined;
let cachedTracer: Tracer | undefined;
let started = false;

export interface TracingSetup {
  /** True when spans are recorded and exported. */
  exporting: boolean;
  /** Sends what is buffered now, and waits for it. */
  forceFlush(): Promise<void>;
  /** Sends what is buffered, then stops: part of a graceful shutdown. */
  shutdown(): Promise<void>;
}

/** The sampler OTEL_TRACES_SAMPLER names (the spec's values); parent-based always-on by default. */
function samplerFrom(sdk: Sdk, env: NodeJS.ProcessEnv): Sampler {
  const ratio = Number(setting(env, "OTEL_TRACES_SAMPLER_ARG") ?? "1");
  const root = (name: string): Sampler => {
    switch (name) {
      case "always_off":
        return new sdk.AlwaysOffSampler();
      case "traceidratio":
        return new sdk.TraceIdRatioBasedSampler(Number.isFinite(ratio) ? ratio : 1);
      default:
        return new sdk.AlwaysOnSampler();
    }
  };
  const name = setting(env, "OTEL_TRACES_SAMPLER") ?? "parentbased_always_on";
  return name.startsWith("parentbased_") ? new sdk.ParentBasedSampler({ root: root(name.slice(12)) }) : root(name);
}

/**
 * Sets up tracing for this process once. Spans are exported when OTEL_EXPORTER_OTLP_ENDPOINT or
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (and OTEL_SDK_DISABLED / OTEL_TRACES_EXPORTER=none do
 * not say otherwise); OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the service.
 */
export async function startTracing(serviceName: string, env: NodeJS.ProcessEnv = process.env): Promise<TracingSetup> {
  if (!started) {
    started = true;
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    // The signal-specific variable is the whole URL; the general one is a base the path goes under.
    const base = setting(env, "OTEL_EXPORTER_OTLP_ENDPOINT");
    const endpoint =
      setting(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") ?? (base && `${base.replace(/\/+$/, "")}/v1/traces`);
    const off = setting(env, "OTEL_SDK_DISABLED") === "true" || setting(env, "OTEL_TRACES_EXPORTER") === "none";
    if (endpoint && !off) {
      const [sdk, { EncodingSpanProcessor }, { detectResources, envDetector, resourceFromAttributes }] =
        await Promise.all([
          import("@opentelemetry/sdk-trace"),
          import("./span-export.ts"),
          import("@opentelemetry/resources"),
        ]);
      const resource = resourceFromAttributes({ "service.name": serviceName }).merge(
        detectResources({ detectors: [envDetector] }),
      );
      provider = new sdk.TracerProvider({
        resource,
        sampler: samplerFrom(sdk, env),
        spanProcessors: [
          new EncodingSpanProcessor({
            url: endpoint,
            scheduledDelayMillis: EXPORT_DELAY_MS,
            maxExportBatchSize: EXPORT_BATCH_SPANS,
            maxQueueSize: EXPORT_QUEUE_SPANS,
          }),
        ],
      });
      trace.setGlobalTracerProvider(provider);
      cachedTracer = undefined;
    }
  }
  return {
    exporting: provider !== undefined,
    forceFlush: async () => {
      await provider?.forceFlush().catch(() => {});
    },
    shutdown: async () => {
      await provider?.shutdown().catch(() => {});
    },
  };
}

/** Whether spans are recorded and exported in this process. */
export function isExporting(): boolean {
  return provider !== undefined;
}

export function tracer(): Tracer {
  cachedTracer ??= trace.getTracer("merch-store");
  return cachedTracer;
}

const headerGetter: TextMapGetter<Headers> = {
  get: (carrier, key) => carrier.get(key) ?? undefined,
  keys: (carrier) => [...carrier.keys()],
};

/** The context a caller sent (traceparent), as the parent of what this call does. */
export function contextFromHeaders(headers: Headers, base: Context = context.active()): Context {
  return propagation.extract(base, headers, headerGetter);
}

/** Writes the active context into outgoing headers (traceparent). */
export function injectHeaders(headers: Headers, from: Context = context.active()): void {
  propagation.inject(from, headers, { set: (carrier, key, value) => carrier.set(key, value) });
}

/** The active span's ids, for log lines and log events; undefined outside a trace. */
export function activeIds(from: Context = context.active()): { traceId: string; spanId: string } | undefined {
  const span = trace.getSpanContext(from);
  if (!span || span.traceId === "00000000000000000000000000000000") return undefined;
  return { traceId: span.traceId, spanId: span.spanId };
}

/**
 * A link to the active span, for a span of work done for many traces at once (a write batch, a
 * Kafka batch) that is linked to each of them instead of parented by one; undefined when spans
 * are not exported or there is no recorded span to link to.
 */
export function linkToActive(from: Context = context.active()): Link | undefined {
  if (provider === undefined) return undefined;
  const span = trace.getSpanContext(from);
  return span && (span.traceFlags & TraceFlags.SAMPLED) !== 0 ? { context: span } : undefined;
}

/** A link to a span known only by its ids (a log event's, say); undefined if they are not ids. */
export function linkToIds(traceId: string, spanId: string): Link | undefined {
  if (provider === undefined || !/^[0-9a-f]{32}$/.test(traceId) || !/^[0-9a-f]{16}$/.test(spanId)) return undefined;
  return { context: { traceId, spanId, traceFlags: TraceFlags.SAMPLED, isRemote: true } };
}

/** Links a batch span keeps (the SDK's default limit); beyond them, only the batch size tells. */
const MAX_LINKS = 128;

/**
 * The span of work done at once for many traces: a root of its own trace, linked once to the span
 * of each request it serves (at most MAX_LINKS of them). Undefined when spans are not exported,
 * so the caller does no work for it.
 */
export function startBatchSpan(
  name: string,
  links: readonly Link[],
  attributes: Record<string, string | number | boolean>,
  kind: SpanKind = SpanKind.INTERNAL,
): Span | undefined {
  if (provider === undefined) return undefined;
  // Several writes or events of one request link to its span once.
  const seen = new Set<string>();
  const distinct: Link[] = [];
  for (const link of links) {
    const id = link.context.spanId;
    if (seen.has(id)) continue;
    seen.add(id);
    distinct.push(link);
    if (distinct.length === MAX_LINKS) break;
  }
  return tracer().startSpan(name, { root: true, kind, links: distinct, attributes });
}

/** Ends a span with an error status when the work failed. */
export function endSpan(span: Span, err?: unknown): void {
  if (err !== undefined) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
  }
  span.end();
}

const NOT_RECORDED = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/** Runs work in a child span of the active context (just runs it when spans are not exported). */
export async function inSpan<T>(
  name: string,
  attributes: Record<string, string | number | boolean>,
  work: (span: Span) => Promise<T>,
  kind: SpanKind = SpanKind.INTERNAL,
): Promise<T> {
  // Not exported: no span, no context to switch to; the caller's context stays the active one.
  if (provider === undefined) return work(NOT_RECORDED);
  return tracer().startActiveSpan(name, { kind, attributes }, async (span) => {
    try {
      const result = await work(span);
      span.end();
      return result;
    } catch (err) {
      endSpan(span, err);
      throw err;
    }
  });
}
