import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { type Context, context, diag, TraceFlags } from "@opentelemetry/api";
import { type ExportResult, ExportResultCode, type InstrumentationScope, suppressTracing } from "@opentelemetry/core";
import { OTLPExporterBase } from "@opentelemetry/otlp-exporter-base";
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from "@opentelemetry/otlp-exporter-base/node-http";
import type { Resource } from "@opentelemetry/resources";
import type { ReadableSpan, Span, SpanProcessor } from "@opentelemetry/sdk-trace";
import { ProtoWriter, writeResource, writeScope, writeSpan } from "./otlp-encode.ts";

/** Spans encoded and waiting for their request, under one resource and scope. */
interface Group {
  resource: Resource;
  scope: InstrumentationScope;
  spans: ProtoWriter;
  count: number;
}

/** One OTLP request's body, ready to send. */
export interface EncodedSpans {
  bytes: Uint8Array;
  count: number;
}

export interface EncodingSpanProcessorOptions {
  /** The whole OTLP/HTTP traces URL (…/v1/traces). */
  url: string;
  /** A request leaves with this many spans, or… */
  maxExportBatchSize: number;
  /** …this long after the first span of it ended. */
  scheduledDelayMillis: number;
  /** Spans encoded and not yet handed to an export at most; beyond, new spans are dropped. */
  maxQueueSize: number;
}

/**
 * The BatchSpanProcessor's contract (sampled spans only, batches of maxExportBatchSize at least
 * every scheduledDelayMillis, one export at a time, at most maxQueueSize waiting, dropped beyond)
 * with OTLP's protobuf written when each span ends (otlp-encode.ts): what waits for the export
 * is bytes in a reused buffer, not span objects. The request goes out through the OTLP exporter's
 * own HTTP transport, so the OTEL_EXPORTER_OTLP_* variables (headers, timeout, compression, TLS)
 * and its retries mean what they mean for OTLPTraceExporter.
 */
export class EncodingSpanProcessor implements SpanProcessor {
  readonly #exporter: OTLPExporterBase<EncodedSpans>;
  readonly #maxBatch: number;
  readonly #delayMs: number;
  readonly #maxQueue: number;
  /** By resource, then by scope: in practice one group. */
  readonly #groups = new Map<Resource, Map<InstrumentationScope, Group>>();
  #queued = 0;
  #dropped = 0;
  #timer: NodeJS.Timeout | undefined;
  #exporting: Promise<void> | undefined;
  #shutdown: Promise<void> | undefined;

  constructor(options: EncodingSpanProcessorOptions) {
    this.#exporter = new OTLPExporterBase(
      createOtlpHttpExportDelegate(
        convertLegacyHttpOptions({ url: options.url }, "TRACES", "v1/traces", {
          "Content-Type": "application/x-protobuf",
        }),
        encodedSerializer,
        "merch_encoding_span_exporter",
        { name: "span", countItems: (request: EncodedSpans) => request.count },
        undefined,
      ),
    );
    this.#maxBatch = options.maxExportBatchSize;
    this.#delayMs = options.scheduledDelayMillis;
    this.#maxQueue = options.maxQueueSize;
  }

  /** Spans dropped so far because the queue was full. */
  get dropped(): number {
    return this.#dropped;
  }

  onStart(_span: Span, _parentContext: Context): void {}

  onEnd(span: ReadableSpan): void {
    if (this.#shutdown !== undefined) return;
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    if (this.#queued >= this.#maxQueue) {
      if (this.#dropped++ === 0) diag.warn("span queue full: dropping spans until the collector catches up");
      return;
    }
    const group = this.#group(span.resource, span.instrumentationScope);
    writeSpan(group.spans, span);
    group.count++;
    this.#queued++;
    if (this.#queued >= this.#maxBatch) this.#flushSoon(0);
    else this.#flushSoon(this.#delayMs);
  }

  forceFlush(): Promise<void> {
    return this.#shutdown ?? this.#flushAll();
  }

  shutdown(): Promise<void> {
    this.#shutdown ??= this.#flushAll().then(() => this.#exporter.shutdown());
    return this.#shutdown;
  }

  #group(resource: Resource, scope: InstrumentationScope): Group {
    let scopes = this.#groups.get(resource);
    if (!scopes) {
      scopes = new Map();
      this.#groups.set(resource, scopes);
    }
    let group = scopes.get(scope);
    if (!group) {
      group = { resource, scope, spans: new ProtoWriter(), count: 0 };
      scopes.set(scope, group);
    }
    return group;
  }

  #flushSoon(delayMs: number): void {
    if (this.#exporting !== undefined) return; // its end looks again
    if (this.#timer !== undefined) {
      if (delayMs > 0) return;
      clearTimeout(this.#timer);
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#exportOnce();
    }, delayMs);
    this.#timer.unref();
  }

  async #flushAll(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#exporting;
    while (this.#queued > 0) await this.#exportOnce();
    await this.#exporter.forceFlush();
  }

  /** Sends what is queued in one request (one at a time); then schedules what came meanwhile. */
  #exportOnce(): Promise<void> {
    if (this.#exporting !== undefined) return this.#exporting;
    const request = this.#take();
    if (request === undefined) return Promise.resolve();
    this.#exporting = new Promise<void>((resolve) => {
      // The export's own HTTP work is no part of any trace.
      context.with(suppressTracing(context.active()), () =>
        this.#exporter.export(request, (result: ExportResult) => {
          if (result.code !== ExportResultCode.SUCCESS) {
            diag.warn(`${request.count} spans not exported: ${result.error?.message ?? "export failed"}`);
          }
          resolve();
        }),
      );
    }).finally(() => {
      this.#exporting = undefined;
      if (this.#queued > 0 && this.#shutdown === undefined) {
        this.#flushSoon(this.#queued >= this.#maxBatch ? 0 : this.#delayMs);
      }
    });
    return this.#exporting;
  }

  /** One ExportTraceServiceRequest holding every queued span; the buffers are kept for reuse. */
  #take(): EncodedSpans | undefined {
    if (this.#queued === 0) return undefined;
    let bytes = 1024;
    for (const scopes of this.#groups.values()) for (const g of scopes.values()) bytes += g.spans.pos + 64;
    const w = new ProtoWriter(bytes);
    for (const [resource, scopes] of this.#groups) {
      if (![...scopes.values()].some((g) => g.count > 0)) continue;
      const resourceSpans = w.begin(1);
      const r = w.begin(1);
      writeResource(w, resource.attributes);
      w.end(r);
      for (const group of scopes.values()) {
        if (group.count === 0) continue;
        const scopeSpans = w.begin(2);
        const s = w.begin(1);
        writeScope(w, group.scope);
        w.end(s);
        w.append(group.spans.bytes());
        if (group.scope.schemaUrl) w.string(3, group.scope.schemaUrl);
        w.end(scopeSpans);
        group.spans.reset();
        group.count = 0;
      }
      if (resource.schemaUrl) w.string(3, resource.schemaUrl);
      w.end(resourceSpans);
    }
    const count = this.#queued;
    this.#queued = 0;
    return { bytes: w.bytes(), count };
  }
}

/** ExportTraceServiceResponse: what the exporter logs when the collector rejected spans. */
interface ExportResponse {
  partialSuccess?: { rejectedSpans?: string; errorMessage?: string };
}

/**
 * Reads ExportTraceServiceResponse's partial_success (field 1: rejected_spans = 1, error_message
 * = 2) by hand: the SDK's serializer would load its whole transformer (1.5 MB of heap) for it.
 */
export function readResponse(data: Uint8Array): ExportResponse {
  const reader = new BinaryReader(data);
  const response: ExportResponse = {};
  while (reader.pos < reader.len) {
    const [field, wire] = reader.tag();
    if (field !== 1 || wire !== WireType.LengthDelimited) {
      reader.skip(wire);
      continue;
    }
    const partial: NonNullable<ExportResponse["partialSuccess"]> = {};
    const inner = new BinaryReader(reader.bytes());
    while (inner.pos < inner.len) {
      const [f, w] = inner.tag();
      if (f === 1 && w === WireType.Varint) partial.rejectedSpans = String(inner.int64());
      else if (f === 2 && w === WireType.LengthDelimited) partial.errorMessage = inner.string();
      else inner.skip(w);
    }
    response.partialSuccess = partial;
  }
  return response;
}

const encodedSerializer = {
  serializeRequest: (request: EncodedSpans): Uint8Array => request.bytes,
  deserializeResponse: readResponse,
};
