// An OTLP/HTTP trace receiver that stores into Zipkin. Zipkin 3.x only accepts its own span
// formats, and the OTLP collector module for it is not published to Maven Central, so this
// receiver reads what the standard OpenTelemetry OTLP/HTTP exporters send (binary protobuf or
// OTLP/JSON, decoded with the types Buf generates from the vendored opentelemetry-proto) and hands
// Zipkin v2 spans mapped the way OpenTelemetry's Zipkin exporter specification maps them.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { promisify } from "node:util";
import { gunzip, inflate } from "node:zlib";
import { fromBinary, fromJson, type JsonValue } from "@bufbuild/protobuf";
import {
  type ExportTraceServiceRequest,
  ExportTraceServiceRequestSchema,
} from "@merch/gen/opentelemetry/proto/collector/trace/v1/trace_service_pb";
import type { AnyValue, KeyValue } from "@merch/gen/opentelemetry/proto/common/v1/common_pb";
import { type Span, Span_SpanKind, Status_StatusCode } from "@merch/gen/opentelemetry/proto/trace/v1/trace_pb";

const MAX_BODY_BYTES = 32 * 1024 * 1024;
const FORWARD_TIMEOUT_MS = 10_000;

export interface ZipkinEndpoint {
  serviceName?: string;
  ipv4?: string;
  ipv6?: string;
  port?: number;
}

export interface ZipkinSpan {
  traceId: string;
  id: string;
  parentId?: string;
  /** Zipkin stores span names lowercased. */
  name?: string;
  kind?: "CLIENT" | "SERVER" | "PRODUCER" | "CONSUMER";
  /** microseconds since the epoch */
  timestamp?: number;
  /** microseconds */
  duration?: number;
  localEndpoint?: ZipkinEndpoint;
  remoteEndpoint?: ZipkinEndpoint;
  annotations?: { timestamp: number; value: string }[];
  tags?: Record<string, string>;
  shared?: boolean;
  debug?: boolean;
}

type AttributeValue = string | number | boolean | AttributeValue[] | { [key: string]: AttributeValue };

const KINDS: Partial<Record<Span_SpanKind, ZipkinSpan["kind"]>> = {
  [Span_SpanKind.SERVER]: "SERVER",
  [Span_SpanKind.CLIENT]: "CLIENT",
  [Span_SpanKind.PRODUCER]: "PRODUCER",
  [Span_SpanKind.CONSUMER]: "CONSUMER",
};

class UnsupportedMediaType extends Error {
  constructor(contentType: string) {
    super(`OTLP/HTTP bodies are application/x-protobuf or application/json, not '${contentType}'`);
  }
}

function decode(body: Uint8Array, contentType: string): ExportTraceServiceRequest {
  const mediaType = contentType.split(";")[0]?.trim().toLowerCase();
  if (mediaType === "application/x-protobuf") return fromBinary(ExportTraceServiceRequestSchema, body);
  if (mediaType !== "application/json") throw new UnsupportedMediaType(contentType);
  const json = JSON.parse(Buffer.from(body).toString("utf8")) as JsonValue;
  // OTLP/JSON departs from protobuf's JSON mapping in one way that matters here: trace and span
  // ids are hex, not base64. Unknown fields are skipped, as the OTLP specification requires.
  return fromJson(ExportTraceServiceRequestSchema, hexIdsToBase64(json), { ignoreUnknownFields: true });
}

const ID_FIELDS = new Set(["traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"]);

function hexIdsToBase64(value: JsonValue): JsonValue {
  if (Array.isArray(value)) return value.map(hexIdsToBase64);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, v]) => [
      key,
      ID_FIELDS.has(key) && typeof v === "string" && /^([0-9a-fA-F]{16}|[0-9a-fA-F]{32})$/.test(v)
        ? Buffer.from(v, "hex").toString("base64")
        : hexIdsToBase64(v),
    ]),
  );
}

function spansOf(request: ExportTraceServiceRequest): ZipkinSpan[] {
  return request.resourceSpans.flatMap((rs) => {
    const resource = attributes(rs.resource?.attributes ?? []);
    return rs.scopeSpans.flatMap((ss) =>
      ss.spans.map((span) => toZipkin(span, resource, ss.scope?.name ?? "", ss.scope?.version ?? "")),
    );
  });
}

function toZipkin(span: Span, resource: Record<string, AttributeValue>, scopeName: string, scopeVersion: string) {
  const { "service.name": serviceName, ...resourceTags } = resource;
  const spanAttributes = attributes(span.attributes);
  const tags: Record<string, string> = {};
  for (const [key, value] of Object.entries({ ...resourceTags, ...spanAttributes })) tags[key] = tagValue(value);
  if (scopeName) tags["otel.scope.name"] = scopeName;
  if (scopeVersion) tags["otel.scope.version"] = scopeVersion;
  if (span.status?.code === Status_StatusCode.OK) tags["otel.status_code"] = "OK";
  if (span.status?.code === Status_StatusCode.ERROR) {
    tags["otel.status_code"] = "ERROR";
    tags.error = span.status.message;
  }
  // Zipkin has no links: they travel as a tag, "traceId/spanId" each, so a batch's span still
  // leads to the requests it served and back.
  if (span.links.length > 0) {
    tags["otel.links"] = span.links.map((l) => `${hex(l.traceId)}/${hex(l.spanId)}`).join(",");
  }

  const zipkin: ZipkinSpan = {
    traceId: hex(span.traceId),
    id: hex(span.spanId),
    name: span.name,
    timestamp: micros(span.startTimeUnixNano),
    localEndpoint: { serviceName: serviceName === undefined ? "unknown_service" : tagValue(serviceName) },
    tags,
  };
  if (span.parentSpanId.some((b) => b !== 0)) zipkin.parentId = hex(span.parentSpanId);
  const kind = KINDS[span.kind];
  if (kind) zipkin.kind = kind;
  if (span.endTimeUnixNano >= span.startTimeUnixNano) {
    zipkin.duration = Math.max(1, micros(span.endTimeUnixNano - span.startTimeUnixNano));
  }
  const peer = spanAttributes["peer.service"];
  if (peer !== undefined) zipkin.remoteEndpoint = { serviceName: tagValue(peer) };
  if (span.events.length > 0) {
    zipkin.annotations = span.events.map((e) => {
      const attrs = attributes(e.attributes);
      return {
        timestamp: micros(e.timeUnixNano),
        value: Object.keys(attrs).length === 0 ? e.name : `"${e.name}":${JSON.stringify(attrs)}`,
      };
    });
  }
  return zipkin;
}

function attributes(list: readonly KeyValue[]): Record<string, AttributeValue> {
  return Object.fromEntries(list.map((kv) => [kv.key, attributeValue(kv.value)]));
}

function attributeValue(v: AnyValue | undefined): AttributeValue {
  switch (v?.value.case) {
    case "stringValue":
    case "boolValue":
    case "doubleValue":
      return v.value.value;
    case "intValue":
      return int64(v.value.value);
    case "bytesValue":
      return Buffer.from(v.value.value).toString("base64");
    case "arrayValue":
      return v.value.value.values.map(attributeValue);
    case "kvlistValue":
      return attributes(v.value.value.values);
    default:
      return "";
  }
}

// Attribute values end up as JSON and Zipkin tag strings, where a bigint cannot go; an integer
// beyond 2^53 keeps its exact digits as a string.
function int64(value: bigint): number | string {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(value)
    : value.toString();
}

function tagValue(value: AttributeValue): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

function micros(nanos: bigint): number {
  return Number(nanos / 1000n);
}

export interface OtlpReceived {
  /** Export requests accepted, by encoding. */
  protobuf: number;
  json: number;
  /** Spans handed to Zipkin. */
  spans: number;
}

export interface OtlpReceiver {
  /** Base URL for OTEL_EXPORTER_OTLP_ENDPOINT; exporters append /v1/traces. */
  url: string;
  received(): OtlpReceived;
  close(): Promise<void>;
}

export async function startOtlpReceiver(zipkinUrl: string): Promise<OtlpReceiver> {
  const received: OtlpReceived = { protobuf: 0, json: 0, spans: 0 };
  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => reply(res, 500, `${err.message}\n`));
  });

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (req.url?.split("?")[0] !== "/v1/traces") return reply(res, 404, "only /v1/traces is served\n");
    if (req.method !== "POST") return reply(res, 405, "POST only\n");
    const contentType = req.headers["content-type"] ?? "";
    let spans: ZipkinSpan[];
    try {
      spans = spansOf(decode(await readBody(req), contentType));
    } catch (err) {
      return reply(res, err instanceof UnsupportedMediaType ? 415 : 400, `${(err as Error).message}\n`);
    }
    if (spans.length > 0) {
      const stored = await fetch(`${zipkinUrl}/api/v2/spans`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(spans),
        signal: AbortSignal.timeout(FORWARD_TIMEOUT_MS),
      }).then(
        async (r) => (r.ok ? "" : `Zipkin answered ${r.status}: ${await r.text()}`),
        (err: Error) => `Zipkin unreachable: ${err.message}`,
      );
      // 503 tells the exporter to retry later rather than drop the batch.
      if (stored) return reply(res, 503, `${stored}\n`);
      received.spans += spans.length;
    }
    const json = contentType.toLowerCase().startsWith("application/json");
    received[json ? "json" : "protobuf"]++;
    // An empty ExportTraceServiceResponse: zero bytes in protobuf, {} in JSON.
    res.writeHead(200, { "content-type": json ? "application/json" : "application/x-protobuf" });
    res.end(json ? "{}" : undefined);
  };

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received: () => ({ ...received }),
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

async function readBody(req: IncomingMessage): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new Error(`request body over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  const body = Buffer.concat(chunks);
  const encoding = (req.headers["content-encoding"] ?? "identity").toLowerCase();
  if (encoding === "gzip") return promisify(gunzip)(body);
  if (encoding === "deflate") return promisify(inflate)(body);
  if (encoding === "identity") return body;
  throw new Error(`unsupported content-encoding '${encoding}'`);
}

function reply(res: ServerResponse, status: number, text: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8" }).end(text);
}
