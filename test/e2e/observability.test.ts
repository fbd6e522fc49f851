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

/** The spans a span links to, as "<trace id>/<span id>" (the receiver's otel.links tag). */
const linksOf = (span: ZipkinSpan | undefined): string[] => span?.tags?.["otel.links"]?.split(",") ?? [];

/** Every span named `name` that `service` sent in the last minutes. */
const spansNamed = async (service: string, name: string): Promise<ZipkinSpan[]> =>
  (await zipkin.traces({ serviceName: service, spanName: name, limit: 1000, lookback: 600_000 }))
    .flat()
    .filter((s) => s.name === name && s.localEndpoint?.serviceName === service);

/** Waits for a span of `service` named `name` linked to each of `targets` ("traceId/spanId"). */
const waitForLinks = (service: string, name: string, targets: string[]) =>
  poll(`${service}'s "${name}" spans linked to ${targets.length} spans`, 60_000, async () => {
    const spans = await spansNamed(service, name);
    const found = targets.map((t) => spans.find((s) => linksOf(s).includes(t)));
    return found.every((s) => s !== undefined) ? (found as ZipkinSpan[]) : undefined;
  });

/** Registers an account through the gateway and logs it in: its Bearer token. */
async function signUp(
  api: ReturnType<typeof client>,
  account: { sid: string; username: string; email: string; password: string },
): Promise<string> {
  assert.equal((await api("POST", "/users/register", { body: account })).status, 201);
  const login = await api<{ token: string }>("POST", "/users/login", {
    body: { username: account.username, password: account.password },
  });
  assert.equal(login.status, 200);
  return login.body.token;
}

const PLACE_ORDERS = "merch.store.v1.orderservice/placeorders";

test("one POST /orders: its trace holds the request; the batches that carried it to db-service, wrote it and published its events link to it", async () => {
  const api = client(store.url);
  const token = await signUp(api, {
    sid: "T1",
    username: "tracer",
    email: "tracer@example.com",
    password: "follow the trace",
  });
  const placed = await api<{ id: number }>("POST", "/orders", {
    token,
    body: { product_id: 2, quantity: 1 },
  });
  assert.equal(placed.status, 201);

  const byName = (spans: ZipkinSpan[], name: string) => spans.find((s) => s.name === name);
  // The request's own trace: the gateway's span, the root.
  const spans = await zipkin.waitForTrace(
    (s) => byName(s, "post /orders")?.tags?.["http.response.status_code"] === "201",
    60_000,
    { serviceName: "gateway", spanName: "post /orders" },
  );
  const server = byName(spans, "post /orders");
  assert.ok(server, JSON.stringify(spans.map((s) => [s.name, s.kind])));
  assert.equal(server.parentId, undefined, "the gateway's span is the root");
  assert.equal(server.localEndpoint?.serviceName, "gateway");
  const request = `${server.traceId}/${server.id}`;

  // The order went to db-service in a batch, which serves many requests and is a trace of its
  // own: the request links to it, and it links back to the request.
  const link = linksOf(server)[0];
  assert.ok(link, "the request's span links to the batch that carried its order");
  const [batchTraceId, batchSpanId] = link.split("/");
  const batchTrace = await zipkin.waitForTrace(
    (s) => s.some((x) => x.id === batchSpanId) && s.some((x) => x.name === PLACE_ORDERS && x.kind === "SERVER"),
    60_000,
    { serviceName: "gateway", spanName: "gateway order batch" },
  );
  const batch = batchTrace.find((x) => x.id === batchSpanId);
  const called = batchTrace.find((x) => x.name === PLACE_ORDERS && x.kind === "CLIENT");
  const served = batchTrace.find((x) => x.name === PLACE_ORDERS && x.kind === "SERVER");
  assert.ok(batch && called && served, JSON.stringify(batchTrace.map((x) => [x.name, x.kind])));
  assert.equal(batch.traceId, batchTraceId);
  assert.equal(batch.parentId, undefined, "the batch is a root");
  assert.ok(linksOf(batch).includes(request), "and links back");
  assert.equal(called.parentId, batch.id);
  assert.equal(served.parentId, called.id);
  assert.equal(served.localEndpoint?.serviceName, "db-service");

  // db-service's transaction that wrote it, and log-service's Kafka batch that published its
  // events, are spans of their own too, linked to the call and to the request they served.
  const [written] = await waitForLinks("db-service", "db write batch", [`${served.traceId}/${served.id}`]);
  assert.ok(written);
  assert.equal(written.parentId, undefined, "a write batch is a root, not a child of one of its calls");
  assert.equal(written.tags?.["db.operation.name"], "order.place");
  assert.ok(Number(written.tags?.["db.operation.batch.size"]) >= 1);
  const [publish] = await waitForLinks("log-service", "log publish", [request]);
  assert.ok(publish);
  assert.equal(publish.kind, "PRODUCER");
  assert.equal(publish.parentId, undefined);
  assert.ok(Number(publish.tags?.["messaging.batch.message_count"]) >= 1);

  // The order's events on Kafka carry the trace id, so a record leads to its trace.
  const traceId = server.traceId;
  const record = await channel.waitFor(
    (r) => r.record.event === "order.placed" && r.record.trace_id === traceId,
    "order.placed with its trace",
  );
  assert.equal(record.record.attributes.order_id, String(placed.body.id));

  // A log line written while serving a traced request says which trace it belongs to.
  await api("POST", "/orders", { token, body: { product_id: 999, quantity: 1 } });
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

test("orders placed together make batch spans, not spans per order, in the gateway, db-service and log-service", async () => {
  // Tracing stays within its CPU budget by making one span per batch (of calls to db-service, of
  // writes, of Kafka records), each linked to the requests it carries. A span per order or per
  // event showing up in a request's or a batch's trace is that cost coming back.
  const api = client(store.url);
  const token = await signUp(api, {
    sid: "T2",
    username: "batcher",
    email: "batcher@example.com",
    password: "orders together",
  });
  const started = Date.now();
  const count = 16;
  const placed = await Promise.all(
    Array.from({ length: count }, () => api("POST", "/orders", { token, body: { product_id: 3, quantity: 1 } })),
  );
  assert.deepEqual(
    placed.map((r) => r.status),
    placed.map(() => 201),
  );

  // Each order's trace is its request's span alone.
  const requests = await poll(`the ${count} orders' request spans`, 60_000, async () => {
    const found = (await spansNamed("gateway", "post /orders")).filter(
      (s) => (s.timestamp ?? 0) >= started * 1000 && s.tags?.["http.response.status_code"] === "201",
    );
    return found.length >= count ? found : undefined;
  });
  // Spans reach Zipkin per service and per export: give stragglers time, then read the traces.
  await new Promise((r) => setTimeout(r, 3000));
  for (const r of requests) {
    const spans = (await zipkin.trace(r.traceId)) ?? [];
    assert.deepEqual(
      spans.map((s) => `${s.localEndpoint?.serviceName} ${s.kind ?? "INTERNAL"} ${s.name}`),
      ["gateway SERVER post /orders"],
      "an order's trace holds its request only: no span per order in db-service or log-service",
    );
  }

  // Each request is linked from one gateway batch, whose trace is the call and nothing per order.
  const ids = requests.map((r) => `${r.traceId}/${r.id}`);
  await waitForLinks("gateway", "gateway order batch", ids);
  const batches = (await spansNamed("gateway", "gateway order batch")).filter((b) =>
    linksOf(b).some((l) => ids.includes(l)),
  );
  for (const id of ids) assert.equal(batches.filter((b) => linksOf(b).includes(id)).length, 1, id);
  const calls: string[] = [];
  for (const b of batches) {
    const spans = (await zipkin.trace(b.traceId)) ?? [];
    assert.deepEqual(
      spans.map((s) => `${s.localEndpoint?.serviceName} ${s.kind ?? "INTERNAL"} ${s.name}`).sort(),
      [`db-service SERVER ${PLACE_ORDERS}`, `gateway CLIENT ${PLACE_ORDERS}`, "gateway INTERNAL gateway order batch"],
      "a batch's trace holds the batch and its call only: no span per write",
    );
    const served = spans.find((s) => s.kind === "SERVER");
    if (served) calls.push(`${served.traceId}/${served.id}`);
  }

  // Each call is linked from the write batches that wrote its orders: fewer spans than orders.
  await waitForLinks("db-service", "db write batch", calls);
  const writes = (await spansNamed("db-service", "db write batch")).filter((w) =>
    linksOf(w).some((l) => calls.includes(l)),
  );
  const written = writes.reduce((n, w) => n + Number(w.tags?.["db.operation.batch.size"]), 0);
  assert.ok(written >= count, `the write batches linked to the calls wrote ${written} orders`);
  assert.ok(writes.length < count, `${writes.length} write batch spans for ${count} orders`);
  const publishes = await waitForLinks("log-service", "log publish", ids);
  for (const p of new Set(publishes)) {
    assert.ok(linksOf(p).length <= Number(p.tags?.["messaging.batch.message_count"]), JSON.stringify(p.tags));
  }
  assert.ok(new Set(publishes).size < count, `${new Set(publishes).size} publish spans for ${count} orders`);
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
