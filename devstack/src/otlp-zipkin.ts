// An OTLP/HTTP trace receiver that stores into Zipkin. Zipkin 3.x only accepts its own span
// formats, and the OTLP collector module for it is not published to Maven Central, so this
// receiver decodes what the standard OpenTelemetry OTLP/HTTP exporters send and hands Zipkin
// v2 spans mapped the way OpenTelemetry's Zipkin exporter specification maps them.
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { promisify } from "node:util";
import { gunzip, inflate } from "node:zlib";
import { type AttributeValue, decodeTraceRequest, type OtlpSpan, UnsupportedMediaType } from "./otlp.ts";

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

const KINDS: (ZipkinSpan["kind"] | undefined)[] = [undefined, undefined, "SERVER", "CLIENT", "PRODUCER", "CONSUMER"];

export function toZipkin(span: OtlpSpan): ZipkinSpan {
  const { "service.name": serviceName, ...resourceTags } = span.resource;
  const tags: Record<string, string> = {};
  for (const [key, value] of Object.entries({ ...resourceTags, ...span.attributes })) tags[key] = tagValue(value);
  if (span.scope.name) tags["otel.scope.name"] = span.scope.name;
  if (span.scope.version) tags["otel.scope.version"] = span.scope.version;
  if (span.status.code === 1) tags["otel.status_code"] = "OK";
  if (span.status.code === 2) {
    tags["otel.status_code"] = "ERROR";
    tags.error = span.status.message;
  }

  const zipkin: ZipkinSpan = {
    traceId: span.traceId,
    id: span.spanId,
    name: span.name,
    timestamp: micros(span.startTimeUnixNano),
    localEndpoint: { serviceName: serviceName === undefined ? "unknown_service" : tagValue(serviceName) },
    tags,
  };
  if (span.parentSpanId && !/^0+$/.test(span.parentSpanId)) zipkin.parentId = span.parentSpanId;
  const kind = KINDS[span.kind];
  if (kind) zipkin.kind = kind;
  if (span.endTimeUnixNano >= span.startTimeUnixNano) {
    zipkin.duration = Math.max(1, micros(span.endTimeUnixNano - span.startTimeUnixNano));
  }
  const peer = span.attributes["peer.service"];
  if (peer !== undefined) zipkin.remoteEndpoint = { serviceName: tagValue(peer) };
  if (span.events.length > 0) {
    zipkin.annotations = span.events.map((e) => ({
      timestamp: micros(e.timeUnixNano),
      value: Object.keys(e.attributes).length === 0 ? e.name : `"${e.name}":${JSON.stringify(e.attributes)}`,
    }));
  }
  return zipkin;
}

function tagValue(value: AttributeValue): string {
  return typeof value === "string" ? value : JSON.stringify(value);
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
    let spans: OtlpSpan[];
    try {
      spans = decodeTraceRequest(await readBody(req), contentType);
    } catch (err) {
      return reply(res, err instanceof UnsupportedMediaType ? 415 : 400, `${(err as Error).message}\n`);
    }
    if (spans.length > 0) {
      const stored = await fetch(`${zipkinUrl}/api/v2/spans`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(spans.map(toZipkin)),
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
