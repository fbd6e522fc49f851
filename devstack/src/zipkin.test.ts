import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { OTLPTraceExporter as JsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as ProtoExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { SimpleSpanProcessor, type SpanExporter, TracerProvider } from "@opentelemetry/sdk-trace";
import { startZipkin, ZIPKIN_VERSION, type ZipkinServer, type ZipkinSpan } from "./zipkin.ts";

let zipkin: ZipkinServer | undefined;

before(
  async () => {
    zipkin = await startZipkin();
  },
  { timeout: 12 * 60_000 },
);

after(
  async () => {
    await zipkin?.stop();
  },
  { timeout: 30_000 },
);

test("pom.xml pins the same Zipkin version as ZIPKIN_VERSION", () => {
  const pom = readFileSync(new URL("../zipkin/pom.xml", import.meta.url), "utf8");
  assert.match(pom, new RegExp(`<zipkin\\.version>${ZIPKIN_VERSION.replaceAll(".", "\\.")}</zipkin\\.version>`));
});

// The day Zipkin serves OTLP itself, this fails and otlp-zipkin.ts can go.
test("Zipkin itself has no OTLP endpoint, so the OTLP receiver is needed", { timeout: 30_000 }, async () => {
  assert.ok(zipkin);
  const res = await fetch(`${zipkin.url}/v1/traces`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
    signal: AbortSignal.timeout(10_000),
  });
  assert.equal(res.status, 404);
  assert.notEqual(zipkin.otlpEndpoint, zipkin.url);
});

test("the OTLP receiver answers what is not an OTLP trace export as the spec says", { timeout: 30_000 }, async () => {
  assert.ok(zipkin);
  const post = (path: string, contentType: string, body: Uint8Array | string) =>
    fetch(`${zipkin?.otlpEndpoint}${path}`, {
      method: "POST",
      headers: { "content-type": contentType },
      body,
      signal: AbortSignal.timeout(10_000),
    }).then((r) => r.status);
  assert.equal(await post("/v1/traces", "text/plain", "hello"), 415);
  // A resource_spans field whose declared length runs past the end of the body.
  assert.equal(await post("/v1/traces", "application/x-protobuf", new Uint8Array([0x0a, 0x7f, 0x0a])), 400);
  assert.equal(await post("/v1/traces", "application/json", "{not json"), 400);
  assert.equal(await post("/v1/metrics", "application/x-protobuf", new Uint8Array()), 404);
  // An empty export is valid and answered with an empty ExportTraceServiceResponse.
  assert.equal(await post("/v1/traces", "application/x-protobuf", new Uint8Array()), 200);
  assert.equal(await post("/v1/traces", "application/json", "{}"), 200);
});

test("a parent/child trace exported as OTLP protobuf via OTEL_EXPORTER_OTLP_ENDPOINT", {
  timeout: 60_000,
}, async () => {
  assert.ok(zipkin);
  const saved = process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  // Exactly how the services will be configured: a base URL, to which the exporter adds /v1/traces.
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = zipkin.otlpEndpoint;
  let exporter: ProtoExporter;
  try {
    exporter = new ProtoExporter();
  } finally {
    if (saved === undefined) delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
    else process.env.OTEL_EXPORTER_OTLP_ENDPOINT = saved;
  }
  const before = zipkin.otlpReceived().protobuf;
  await checkParentChild(zipkin, exporter, "merch-devstack-proto");
  assert.ok(zipkin.otlpReceived().protobuf > before, "the exporter should have sent protobuf");
});

test("a parent/child trace exported as OTLP/JSON", { timeout: 60_000 }, async () => {
  assert.ok(zipkin);
  const exporter = new JsonExporter({ url: `${zipkin.otlpEndpoint}/v1/traces` });
  const before = zipkin.otlpReceived().json;
  await checkParentChild(zipkin, exporter, "merch-devstack-json");
  assert.ok(zipkin.otlpReceived().json > before, "the exporter should have sent JSON");
});

async function checkParentChild(server: ZipkinServer, exporter: SpanExporter, service: string): Promise<void> {
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ "service.name": service, "deployment.environment.name": "test" }),
    spanProcessors: [new SimpleSpanProcessor({ exporter })],
  });
  let traceId: string;
  let otherIds: { traceId: string; spanId: string };
  try {
    const tracer = provider.getTracer("devstack-test", "1.0.0");
    const parent = tracer.startSpan("GET /api/products", {
      kind: SpanKind.SERVER,
      attributes: { "http.request.method": "GET", "http.response.status_code": 200 },
    });
    // A link (to a span of another trace) becomes a tag, since Zipkin has no links.
    const other = tracer.startSpan("unrelated", { root: true });
    other.end();
    otherIds = other.spanContext();
    const child = tracer.startSpan(
      "db.query",
      {
        kind: SpanKind.CLIENT,
        attributes: { "peer.service": "db-service", "db.rows": 3, "db.cached": false },
        links: [{ context: other.spanContext() }],
      },
      trace.setSpan(context.active(), parent),
    );
    child.addEvent("cache miss", { key: "products:all" });
    child.setStatus({ code: SpanStatusCode.ERROR, message: "slow query" });
    child.end();
    parent.end();
    traceId = parent.spanContext().traceId;
    await provider.forceFlush();
  } finally {
    await provider.shutdown();
  }

  const spans = await server.waitForTrace((t) => t.length === 2 && t[0]?.traceId === traceId, 30_000, {
    serviceName: service,
  });
  const byName = new Map(spans.map((s): [string | undefined, ZipkinSpan] => [s.name, s]));
  // Zipkin lowercases span names when it stores them.
  const parentSpan = byName.get("get /api/products");
  const childSpan = byName.get("db.query");
  assert.ok(parentSpan && childSpan, `unexpected spans: ${JSON.stringify(spans)}`);

  assert.equal(parentSpan.parentId, undefined);
  assert.equal(childSpan.parentId, parentSpan.id);
  assert.equal(parentSpan.kind, "SERVER");
  assert.equal(childSpan.kind, "CLIENT");
  assert.equal(parentSpan.localEndpoint?.serviceName, service);
  assert.equal(childSpan.remoteEndpoint?.serviceName, "db-service");
  assert.equal(parentSpan.tags?.["http.response.status_code"], "200");
  assert.equal(parentSpan.tags?.["deployment.environment.name"], "test");
  assert.equal(parentSpan.tags?.["otel.scope.name"], "devstack-test");
  assert.equal(childSpan.tags?.["db.rows"], "3");
  assert.equal(childSpan.tags?.["db.cached"], "false");
  assert.equal(childSpan.tags?.["otel.status_code"], "ERROR");
  assert.equal(childSpan.tags?.error, "slow query");
  assert.notEqual(otherIds.traceId, traceId);
  assert.equal(childSpan.tags?.["otel.links"], `${otherIds.traceId}/${otherIds.spanId}`);
  assert.equal(parentSpan.tags?.["otel.links"], undefined);
  assert.deepEqual(
    childSpan.annotations?.map((a) => a.value),
    ['"cache miss":{"key":"products:all"}'],
  );
  assert.ok((parentSpan.duration ?? 0) >= (childSpan.duration ?? 0));
  assert.ok((childSpan.timestamp ?? 0) >= (parentSpan.timestamp ?? 0));

  // The same trace by id, the way a test would follow a trace id it got from a response header.
  assert.equal((await server.trace(traceId))?.length, 2);
}
