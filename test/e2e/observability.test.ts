import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  checkMetrics,
  client,
  type PrometheusServer,
  startPrometheus,
  startTestStore,
  startZipkin,
  type TestStore,
  type ZipkinServer,
  type ZipkinSpan,
} from "@merch/devstack";
import { type ChannelReader, followLogChannel } from "@merch/testkit";

// The store seen from the outside, as an operator sees it: one POST /orders as one trace across
// the three services in a real trace backend (Zipkin, fed over OTLP/HTTP), the trace id in the
// order's Kafka records and in the services' log lines, and every service's metrics valid for
// promtool and scraped by a real Prometheus.

let zipkin: ZipkinServer;
let prometheus: PrometheusServer | undefined;
let store: TestStore;
let channel: ChannelReader;

before(async () => {
  zipkin = await startZipkin();
  store = await startTestStore({
    kafka: true,
    serviceEnv: {
      // Only the standard OTEL_* variables configure tracing.
      gateway: { OTEL_EXPORTER_OTLP_ENDPOINT: zipkin.otlpEndpoint },
      "db-service": { OTEL_EXPORTER_OTLP_ENDPOINT: zipkin.otlpEndpoint, LOG_LEVEL: "debug" },
      "log-service": { OTEL_EXPORTER_OTLP_ENDPOINT: zipkin.otlpEndpoint },
    },
  });
  channel = await followLogChannel(store.kafka?.brokers ?? "");
});
after(async () => {
  await channel?.stop();
  await prometheus?.stop();
  await store?.stop();
  await zipkin?.stop();
});

// Each service's metrics port, never its public or RPC port.
const metricsUrls = () => ({
  gateway: store.stack.metricsUrls.gateway,
  "db-service": store.stack.metricsUrls["db-service"],
  "log-service": store.stack.metricsUrls["log-service"],
});

test("one POST /orders: its trace holds the request and its log publish; the batch that carried it to db-service is linked both ways", async () => {
  const api = client(store.url);
  const account = { sid: "T1", username: "tracer", email: "tracer@example.com", password: "follow the trace" };
  assert.equal((await api("POST", "/users/register", { body: account })).status, 201);
  const login = await api<{ token: string }>("POST", "/users/login", {
    body: { username: account.username, password: account.password },
  });
  const placed = await api<{ id: number }>("POST", "/orders", {
    token: login.body.token,
    body: { product_id: 2, quantity: 1 },
  });
  assert.equal(placed.status, 201);

  const byName = (spans: ZipkinSpan[], name: string) => spans.find((s) => s.name === name);
  // The request's own trace: the gateway's span, the root, and log-service's publish under it.
  const spans = await zipkin.waitForTrace(
    (s) =>
      byName(s, "post /orders")?.tags?.["http.response.status_code"] === "201" &&
      byName(s, "log publish order.placed") !== undefined,
    60_000,
    { serviceName: "gateway", spanName: "post /orders" },
  );
  const server = byName(spans, "post /orders");
  const publish = byName(spans, "log publish order.placed");
  assert.ok(server && publish, JSON.stringify(spans.map((s) => [s.name, s.kind])));
  assert.equal(server.parentId, undefined, "the gateway's span is the root");
  assert.equal(publish.parentId, server.id);
  assert.equal(server.localEndpoint?.serviceName, "gateway");
  assert.equal(publish.localEndpoint?.serviceName, "log-service");
  assert.equal(publish.kind, "PRODUCER");
  assert.equal(server.tags?.["http.response.status_code"], "201");

  // The order went to db-service in a batch, which serves many requests and is a trace of its
  // own: the request links to it, and it links back to the request.
  const link = server.tags?.["otel.links"]?.split(",")[0];
  assert.ok(link, "the request's span links to the batch that carried its order");
  const [batchTraceId, batchSpanId] = link.split("/");
  const batchTrace = await zipkin.waitForTrace(
    (s) => s.some((x) => x.id === batchSpanId) && byName(s, "db order.place") !== undefined,
    60_000,
    { serviceName: "gateway", spanName: "gateway order batch" },
  );
  const batch = batchTrace.find((x) => x.id === batchSpanId);
  const called = batchTrace.find((x) => x.name === "merch.store.v1.orderservice/placeorders" && x.kind === "CLIENT");
  const served = batchTrace.find((x) => x.name === "merch.store.v1.orderservice/placeorders" && x.kind === "SERVER");
  const sql = byName(batchTrace, "db order.place");
  assert.ok(batch && called && served && sql, JSON.stringify(batchTrace.map((x) => [x.name, x.kind])));
  assert.equal(batch.traceId, batchTraceId);
  assert.equal(batch.parentId, undefined, "the batch is a root");
  assert.ok(batch.tags?.["otel.links"]?.split(",").includes(`${server.traceId}/${server.id}`), "and links back");
  assert.equal(called.parentId, batch.id);
  assert.equal(served.parentId, called.id);
  assert.equal(sql.parentId, served.id);
  assert.equal(served.localEndpoint?.serviceName, "db-service");
  assert.equal(sql.localEndpoint?.serviceName, "db-service");

  // The order's events on Kafka carry the trace id, so a record leads to its trace.
  const traceId = server.traceId;
  const record = await channel.waitFor(
    (r) => r.record.event === "order.placed" && r.record.trace_id === traceId,
    "order.placed with its trace",
  );
  assert.equal(record.record.attributes.order_id, String(placed.body.id));

  // A log line written while serving a traced request says which trace it belongs to.
  await api("POST", "/orders", { token: login.body.token, body: { product_id: 999, quantity: 1 } });
  const deadline = Date.now() + 10_000;
  const traced = () =>
    store.stack.services["db-service"]
      .output()
      .split("\n")
      .some(
        (line) =>
          /"trace_id":"[0-9a-f]{32}","span_id":"[0-9a-f]{16}"/.test(line) &&
          /product_not_found|99 does not exist/.test(line),
      );
  while (!traced() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.ok(traced(), "db-service's log line of the refused order carries trace_id and span_id");
});

test("/metrics is served on each service's metrics port (loopback) only, never on its public or RPC port", async () => {
  for (const service of Object.values(store.stack.services)) {
    const res = await fetch(`${service.url}/metrics`);
    await res.arrayBuffer();
    assert.equal(res.status, 404, `${service.name} serves /metrics on ${service.url}`);
  }
  for (const url of Object.values(metricsUrls())) assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
});

test("every service's metrics pass promtool, and a real Prometheus scrapes all three", async () => {
  for (const [service, url] of Object.entries(metricsUrls())) {
    const text = await (await fetch(url)).text();
    const check = await checkMetrics(text);
    assert.ok(check.ok, `${service}: ${check.problems.join("\n")}`);
  }
  const gateway = await (await fetch(metricsUrls().gateway)).text();
  for (const name of [
    "http_server_request_duration_seconds_bucket",
    "http_server_active_requests",
    "log_queue_queued",
    "log_queue_in_flight",
    "log_queue_delivered_total",
    "log_queue_dropped_total",
    "process_cpu_seconds_total",
  ]) {
    assert.match(gateway, new RegExp(`^${name}`, "m"), `gateway: ${name}`);
  }
  const db = await (await fetch(metricsUrls()["db-service"])).text();
  for (const name of [
    "rpc_server_duration_seconds_bucket",
    "rpc_server_active_requests",
    "db_client_operation_duration_seconds_bucket",
    'db_client_connections{state="used"}',
    'db_client_connections{state="max"}',
    "db_write_batch_size_bucket",
    "argon2_queue_length",
    "login_throttle_refusals_total",
  ]) {
    assert.ok(db.includes(name), `db-service: ${name}`);
  }
  const log = await (await fetch(metricsUrls()["log-service"])).text();
  for (const name of [
    "log_spool_bytes",
    "kafka_publish_duration_seconds_bucket",
    "kafka_publish_errors_total",
    "log_events_accepted_total",
  ]) {
    assert.ok(log.includes(name), `log-service: ${name}`);
  }

  prometheus = await startPrometheus({
    targets: Object.entries(metricsUrls()).map(([job, url]) => ({ job, url })),
    scrapeIntervalMs: 1000,
  });
  const series = {
    gateway: 'http_server_request_duration_seconds_count{job="gateway",http_route="/orders"}',
    "db-service": 'rpc_server_duration_seconds_count{job="db-service",rpc_method="PlaceOrders"}',
    "log-service": 'log_events_accepted_total{job="log-service"}',
  };
  for (const [job, promql] of Object.entries(series)) {
    const samples = await prometheus.waitForSeries(promql, 30_000);
    assert.ok(samples.length > 0 && Number(samples[0]?.value[1]) > 0, `${job}: ${promql} = ${JSON.stringify(samples)}`);
  }
  const health = await prometheus.targets();
  assert.deepEqual(health.map((t) => t.health).sort(), ["up", "up", "up"], JSON.stringify(health));
});
