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
import { type ChannelReader, followLogChannel, poll } from "@merch/testkit";

// The store seen from the outside, as an operator sees it: one POST /orders as one trace across
// the gateway and db-service in a real trace backend (Zipkin, fed over OTLP/HTTP), the batches
// that wrote it and published its events as spans linked to it, the trace id in the
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

/** The spans a span links to, as "<trace id>-<span id>" (the receiver's otel.link.<i> tags). */
const linksOf = (span: ZipkinSpan): string[] =>
  Object.entries(span.tags ?? {})
    .filter(([key]) => /^otel\.link\.\d+$/.test(key))
    .map(([, value]) => value);

/** Every span named `name` that `service` sent in the last minute (each one a root of its own trace). */
const spansNamed = async (service: string, name: string): Promise<ZipkinSpan[]> =>
  (await zipkin.traces({ serviceName: service, spanName: name, limit: 1000, lookback: 60_000 }))
    .flat()
    .filter((s) => s.name === name && s.localEndpoint?.serviceName === service);

/** Waits for the spans of `service` named `name` that link to each of `targets`; one per target. */
const waitForLinks = (service: string, name: string, targets: string[]) =>
  poll(`${service}'s "${name}" spans linked to ${targets.length} request spans`, 60_000, async () => {
    const spans = await spansNamed(service, name);
    const found = targets.map((t) => spans.find((s) => linksOf(s).includes(t)));
    return found.every((s) => s !== undefined) ? (found as ZipkinSpan[]) : undefined;
  });

const PLACE_ORDER = "merch.store.v1.orderservice/placeorder";

test("one POST /orders is one trace: the gateway's request, its db-service call, and the batches that link to it", async () => {
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
  const spans = await zipkin.waitForTrace(
    (s) =>
      byName(s, "post /orders") !== undefined && s.some((span) => span.name === PLACE_ORDER && span.kind === "SERVER"),
    60_000,
    { serviceName: "gateway", spanName: "post /orders" },
  );
  const server = byName(spans, "post /orders");
  const served = spans.find((s) => s.name === PLACE_ORDER && s.kind === "SERVER");
  const called = spans.find((s) => s.name === PLACE_ORDER && s.kind === "CLIENT");
  assert.ok(server && served && called, JSON.stringify(spans.map((s) => [s.name, s.kind])));
  // Who is whose child, and who did it.
  assert.equal(server.parentId, undefined, "the gateway's span is the root");
  assert.equal(called.parentId, server.id);
  assert.equal(served.parentId, called.id);
  assert.equal(server.localEndpoint?.serviceName, "gateway");
  assert.equal(served.localEndpoint?.serviceName, "db-service");
  assert.equal(server.tags?.["http.response.status_code"], "201");

  // The write batch that placed the order and the Kafka batch that published its events are
  // spans of their own, each linked to the requests it served: found from the order's spans.
  const traceId = server.traceId;
  const [batch] = await waitForLinks("db-service", "db write batch", [`${traceId}-${served.id}`]);
  assert.ok(batch);
  assert.equal(batch.parentId, undefined, "a batch is a root, not a child of one of its orders");
  assert.equal(batch.tags?.["db.operation.name"], "order.place");
  assert.ok(Number(batch.tags?.["db.operation.batch.size"]) >= 1);
  const publishes = await poll("log-service's publish span of the order's events", 60_000, async () => {
    const found = (await spansNamed("log-service", "log publish")).filter((s) =>
      linksOf(s).some((l) => l.startsWith(`${traceId}-`)),
    );
    return found.length > 0 ? found : undefined;
  });
  const ids = new Set(spans.map((s) => s.id));
  for (const publish of publishes) {
    assert.equal(publish.kind, "PRODUCER");
    assert.equal(publish.parentId, undefined);
    for (const link of linksOf(publish).filter((l) => l.startsWith(`${traceId}-`))) {
      assert.ok(ids.has(link.slice(33)), `the publish span links to ${link}, a span of the order's trace`);
    }
  }

  // The order's events on Kafka carry the trace id, so a record leads to its trace.
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

test("orders placed together make batch spans, not spans per order, in db-service and log-service", async () => {
  // Tracing stays within its CPU budget by making one span per write batch and one per Kafka
  // batch, each linked to the orders it carries. A span per write or per event in an order's
  // trace is the cost coming back.
  const api = client(store.url);
  const account = { sid: "T2", username: "batcher", email: "batcher@example.com", password: "orders together" };
  assert.equal((await api("POST", "/users/register", { body: account })).status, 201);
  const login = await api<{ token: string }>("POST", "/users/login", {
    body: { username: account.username, password: account.password },
  });
  const count = 16;
  const placed = await Promise.all(
    Array.from({ length: count }, () =>
      api("POST", "/orders", { token: login.body.token, body: { product_id: 3, quantity: 1 } }),
    ),
  );
  assert.deepEqual(
    placed.map((r) => r.status),
    placed.map(() => 201),
  );

  // Each order's trace: the gateway's request, its call, db-service's RPC span, and nothing else.
  const traces = await poll(`the ${count} orders' traces`, 60_000, async () => {
    const found = (await zipkin.traces({ serviceName: "gateway", spanName: "post /orders", limit: 1000 })).filter(
      (t) =>
        t.some((s) => s.name === "post /orders" && s.parentId === undefined) &&
        t.some((s) => s.name === PLACE_ORDER && s.kind === "SERVER"),
    );
    // The first test's two orders are there too.
    return found.length >= count + 1 ? found : undefined;
  });
  // Spans arrive at Zipkin per service: give a straggler a moment, then read the traces again.
  await new Promise((r) => setTimeout(r, 2000));
  const served: string[] = [];
  for (const t of traces) {
    const spans = (await zipkin.trace(t[0]?.traceId ?? "")) ?? [];
    const names = spans.map((s) => `${s.localEndpoint?.serviceName} ${s.kind ?? "INTERNAL"} ${s.name}`).sort();
    assert.deepEqual(
      names,
      [`db-service SERVER ${PLACE_ORDER}`, `gateway CLIENT ${PLACE_ORDER}`, "gateway SERVER post /orders"],
      "an order's trace holds its request and its db-service call only: no span per write or per log event",
    );
    const rpc = spans.find((s) => s.kind === "SERVER" && s.name === PLACE_ORDER);
    if (rpc) served.push(`${rpc.traceId}-${rpc.id}`);
  }

  // Every order's RPC is linked from exactly one write batch, which wrote it with the others.
  await waitForLinks("db-service", "db write batch", served);
  const batches = await spansNamed("db-service", "db write batch");
  for (const rpc of served) {
    const linking = batches.filter((b) => linksOf(b).includes(rpc));
    assert.equal(linking.length, 1, `one write batch links to ${rpc}: ${JSON.stringify(linking)}`);
  }
  const ours = batches.filter((b) => linksOf(b).some((l) => served.includes(l)));
  for (const b of ours) {
    const size = Number(b.tags?.["db.operation.batch.size"]);
    assert.ok(linksOf(b).length >= 1 && linksOf(b).length <= size, `${linksOf(b).length} links, ${size} writes`);
  }
  const sizes = ours.map((b) => Number(b.tags?.["db.operation.batch.size"]));
  // Orders that shared a transaction share its span: fewer batch spans than orders then.
  if (sizes.some((n) => n > 1)) assert.ok(ours.length < served.length, `${ours.length} batch spans`);
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
    "db-service": 'rpc_server_duration_seconds_count{job="db-service",rpc_method="PlaceOrder"}',
    "log-service": 'log_events_accepted_total{job="log-service"}',
  };
  for (const [job, promql] of Object.entries(series)) {
    const samples = await prometheus.waitForSeries(promql, 30_000);
    assert.ok(samples.length > 0 && Number(samples[0]?.value[1]) > 0, `${job}: ${promql} = ${JSON.stringify(samples)}`);
  }
  const health = await prometheus.targets();
  assert.deepEqual(health.map((t) => t.health).sort(), ["up", "up", "up"], JSON.stringify(health));
});
