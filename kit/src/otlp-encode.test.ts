import assert from "node:assert/strict";
import { test } from "node:test";
import { equals, fromBinary, toJson } from "@bufbuild/protobuf";
import { ExportTraceServiceRequestSchema } from "@merch/gen/opentelemetry/proto/collector/trace/v1/trace_service_pb";
import { SpanSchema } from "@merch/gen/opentelemetry/proto/trace/v1/trace_pb";
import { context, type HrTime, SpanKind, SpanStatusCode, TraceFlags, trace } from "@opentelemetry/api";
import { TraceState } from "@opentelemetry/core";
import { ProtobufTraceSerializer } from "@opentelemetry/otlp-transformer";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { type ReadableSpan, type SpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import { ProtoWriter, writeResource, writeScope, writeSpan } from "./otlp-encode.ts";

/** Keeps the spans that end, as they are, for the test to encode both ways. */
function keeper(): { processor: SpanProcessor; spans: ReadableSpan[] } {
  const spans: ReadableSpan[] = [];
  return {
    spans,
    processor: {
      onStart: () => {},
      onEnd: (span) => void spans.push(span),
      forceFlush: async () => {},
      shutdown: async () => {},
    },
  };
}

/** Every kind of span the services make, and every kind of value an attribute can hold. */
function someSpans(): ReadableSpan[] {
  const { processor, spans } = keeper();
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ "service.name": "encode-test", "service.instance.id": "ü-1", pid: 4242 }),
    spanProcessors: [processor],
  });
  const tracer = provider.getTracer("merch-store", "1.2.3");
  const remote = trace.setSpanContext(context.active(), {
    traceId: "0af7651916cd43dd8448eb211c80319c",
    spanId: "b7ad6b7169203331",
    traceFlags: TraceFlags.SAMPLED,
    isRemote: true,
    traceState: new TraceState("vendor=a,other=b"),
  });
  const server = tracer.startSpan(
    "POST /orders",
    { kind: SpanKind.SERVER, attributes: { "http.request.method": "POST", "url.path": "/orders" } },
    remote,
  );
  const long = "a long value past one length byte: ".repeat(6);
  const batch = tracer.startSpan("gateway order batch", {
    root: true,
    links: [
      { context: server.spanContext() },
      {
        context: { traceId: "1".repeat(32), spanId: "2".repeat(16), traceFlags: TraceFlags.SAMPLED, isRemote: true },
        attributes: { "link.why": "a log event" },
      },
    ],
    attributes: {
      "merch.orders": 64,
      negative: -5,
      big: 2 ** 40,
      ratio: 0.25,
      ok: true,
      no: false,
      empty: "",
      unicode: "维修 — ünïcödé 🛍️",
      long,
      strings: ["a", "b", long],
      numbers: [1, 2.5, -3],
      flags: [true, false],
    },
  });
  server.addLink({ context: batch.spanContext() });
  server.addEvent("retry", { attempt: 2, reason: "busy" });
  server.setAttribute("http.response.status_code", 201);
  batch.setStatus({ code: SpanStatusCode.ERROR, message: "rolled back: its writes run again one by one" });
  const client = tracer.startSpan(
    "merch.store.v1.OrderService/PlaceOrders",
    { kind: SpanKind.CLIENT },
    trace.setSpan(context.active(), batch),
  );
  const producer = tracer.startSpan("log publish", { kind: SpanKind.PRODUCER, root: true });
  const consumer = tracer.startSpan("consume", { kind: SpanKind.CONSUMER, root: true });
  for (const s of [client, batch, server, producer, consumer]) s.end();
  // A span with many links: its body passes 128 bytes by far, and so does each length around it.
  const many = tracer.startSpan("db write batch", {
    root: true,
    links: Array.from({ length: 100 }, (_, i) => ({
      context: {
        traceId: i.toString(16).padStart(32, "0"),
        spanId: (i + 1).toString(16).padStart(16, "0"),
        traceFlags: TraceFlags.SAMPLED,
      },
    })),
  });
  many.end();
  return spans;
}

/** The request the SDK's own transformer makes of these spans. */
function theirs(spans: ReadableSpan[]) {
  const bytes = ProtobufTraceSerializer.serializeRequest(spans);
  assert.ok(bytes);
  return fromBinary(ExportTraceServiceRequestSchema, bytes);
}

/** The same request written with otlp-encode.ts, the way span-export.ts writes it. */
function ours(spans: ReadableSpan[]) {
  const first = spans[0];
  assert.ok(first);
  const w = new ProtoWriter(16);
  const resourceSpans = w.begin(1);
  const resource = w.begin(1);
  writeResource(w, first.resource.attributes);
  w.end(resource);
  const scopeSpans = w.begin(2);
  const scope = w.begin(1);
  writeScope(w, first.instrumentationScope);
  w.end(scope);
  for (const span of spans) writeSpan(w, span);
  w.end(scopeSpans);
  w.end(resourceSpans);
  return fromBinary(ExportTraceServiceRequestSchema, w.bytes());
}

test("spans encoded one by one decode to what the SDK's OTLP transformer sends", () => {
  const spans = someSpans();
  const expected = theirs(spans);
  const actual = ours(spans);
  // On failure, the JSON shows where they differ.
  assert.deepEqual(toJson(ExportTraceServiceRequestSchema, actual), toJson(ExportTraceServiceRequestSchema, expected));
  assert.ok(equals(ExportTraceServiceRequestSchema, actual, expected));
  const encoded = actual.resourceSpans[0]?.scopeSpans[0]?.spans ?? [];
  assert.equal(encoded.length, spans.length);
  const batch = encoded.find((s) => s.name === "gateway order batch");
  assert.equal(batch?.links.length, 2);
  assert.equal(encoded.find((s) => s.name === "db write batch")?.links.length, 100);
});

test("times are exact nanoseconds, past 2^53", () => {
  const cases: HrTime[] = [
    [0, 0],
    [1, 1],
    [1_765_000_000, 999_999_999],
    [4_294_967_295, 999_999_999],
    [65_535, 65_535],
    [65_536, 123_456_789],
  ];
  for (const time of cases) {
    const w = new ProtoWriter(4);
    w.time(7, time);
    const span = fromBinary(SpanSchema, w.bytes());
    assert.equal(span.startTimeUnixNano, BigInt(time[0]) * 1_000_000_000n + BigInt(time[1]), String(time));
  }
});

test("the writer grows and moves a nested message's body when its length needs more bytes", () => {
  const w = new ProtoWriter(1);
  for (const length of [0, 127, 128, 16_383, 16_384, 300_000]) {
    w.reset();
    const at = w.begin(5);
    w.append(new Uint8Array(length).fill(7));
    w.end(at);
    const span = fromBinary(SpanSchema, w.bytes());
    assert.equal(span.name.length, length);
  }
});
