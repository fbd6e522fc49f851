import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  context,
  endSpan,
  inSpan,
  SpanKind,
  startBatchSpan,
  startTracing,
  type TracingSetup,
  trace,
  tracer,
} from "@merch/kit";
import { startZipkin, type ZipkinServer, type ZipkinSpan } from "./zipkin.ts";

// The services' own export path (kit's startTracing: each span encoded to OTLP protobuf when it
// ends, sent by the OTLP exporter's transport) against the real collector the end-to-end tests
// and the bench use: what arrives is what was recorded, and the queue's bound holds.

let zipkin: ZipkinServer;
let tracing: TracingSetup;

before(
  async () => {
    zipkin = await startZipkin();
    // The resource's detector reads the process's own environment (this test file's process).
    process.env.OTEL_RESOURCE_ATTRIBUTES = "deployment.environment.name=span-export-test";
    tracing = await startTracing("merch-span-export", { OTEL_EXPORTER_OTLP_ENDPOINT: zipkin.otlpEndpoint });
  },
  { timeout: 12 * 60_000 },
);

after(
  async () => {
    await tracing?.shutdown();
    await zipkin?.stop();
  },
  { timeout: 30_000 },
);

test("a request, its child and a batch linked to it reach Zipkin as recorded", { timeout: 60_000 }, async () => {
  assert.ok(tracing.exporting);
  const before = zipkin.otlpReceived();
  const request = tracer().startSpan("POST /orders", {
    kind: SpanKind.SERVER,
    attributes: { "http.request.method": "POST", "url.path": "/orders" },
  });
  const batch = startBatchSpan("gateway order batch", [{ context: request.spanContext() }], { "merch.orders": 1 });
  assert.ok(batch);
  request.addLink({ context: batch.spanContext() });
  await context.with(trace.setSpan(context.active(), request), () =>
    inSpan("db order.place", { "db.operation.name": "order.place", "db.rows": 3, "db.cached": false }, async (s) => {
      s.addEvent("cache miss", { key: "products:all" });
    }),
  );
  endSpan(batch, new Error("rolled back: its writes run again one by one"));
  request.setAttribute("http.response.status_code", 201);
  request.end();
  const traceId = request.spanContext().traceId;

  const spans = await zipkin.waitForTrace((t) => t.length === 2, 30_000, { serviceName: "merch-span-export" });
  assert.equal(spans[0]?.traceId, traceId);
  const byName = new Map(spans.map((s): [string | undefined, ZipkinSpan] => [s.name, s]));
  const server = byName.get("post /orders");
  const child = byName.get("db order.place");
  assert.ok(server && child, JSON.stringify(spans));
  assert.equal(server.kind, "SERVER");
  assert.equal(server.parentId, undefined);
  assert.equal(child.parentId, server.id);
  assert.equal(server.localEndpoint?.serviceName, "merch-span-export");
  assert.equal(server.tags?.["http.response.status_code"], "201");
  assert.equal(server.tags?.["url.path"], "/orders");
  assert.equal(server.tags?.["deployment.environment.name"], "span-export-test");
  assert.equal(server.tags?.["otel.scope.name"], "merch-store");
  assert.equal(child.tags?.["db.rows"], "3");
  assert.equal(child.tags?.["db.cached"], "false");
  assert.deepEqual(
    child.annotations?.map((a) => a.value),
    ['"cache miss":{"key":"products:all"}'],
  );
  assert.ok((child.timestamp ?? 0) >= (server.timestamp ?? 0));
  assert.ok((server.duration ?? 0) >= (child.duration ?? 0));

  // The batch is a trace of its own, linked both ways with the request.
  const batchIds = batch.spanContext();
  assert.equal(server.tags?.["otel.links"], `${batchIds.traceId}/${batchIds.spanId}`);
  const [stored] = (await zipkin.trace(batchIds.traceId)) ?? [];
  assert.ok(stored);
  assert.equal(stored.name, "gateway order batch");
  assert.equal(stored.tags?.["otel.links"], `${traceId}/${server.id}`);
  assert.equal(stored.tags?.["merch.orders"], "1");
  assert.equal(stored.tags?.["otel.status_code"], "ERROR");
  assert.equal(stored.tags?.error, "rolled back: its writes run again one by one");
  assert.equal(zipkin.otlpReceived().protobuf > before.protobuf, true, "sent as OTLP protobuf");
});

test("spans beyond the queue's 2048 are dropped, the rest all arrive, and shutdown sends what waits", {
  timeout: 60_000,
}, async () => {
  // Whatever an earlier test left waiting goes first, so that this one counts from an empty queue.
  await tracing.forceFlush();
  const before = zipkin.otlpReceived().spans;
  // Ended in one turn of the event loop: no export can start before the last, so exactly the
  // queue's bound is kept whatever the machine's speed.
  for (let i = 0; i < 3000; i++) tracer().startSpan("burst", { root: true, attributes: { i } }).end();
  await tracing.shutdown();
  assert.equal(zipkin.otlpReceived().spans - before, 2048);
  // Shut down, nothing more is recorded or sent.
  tracer().startSpan("after shutdown").end();
  await tracing.forceFlush();
  assert.equal(zipkin.otlpReceived().spans - before, 2048);
});
