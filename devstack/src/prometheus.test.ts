import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { checkMetrics, type PrometheusServer, startPrometheus } from "./prometheus.ts";

const GOOD = `# HELP merch_test_requests_total Requests served by the test endpoint.
# TYPE merch_test_requests_total counter
merch_test_requests_total{route="/hello"} 42
# HELP merch_test_in_flight Requests being served now.
# TYPE merch_test_in_flight gauge
merch_test_in_flight 1
`;

let endpoint: Server | undefined;
let metricsUrl = "";
let scrapes = 0;
let prometheus: PrometheusServer | undefined;

before(
  async () => {
    endpoint = createServer((req, res) => {
      if (req.url !== "/metrics") {
        res.writeHead(404).end();
        return;
      }
      scrapes++;
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }).end(GOOD);
    });
    await new Promise<void>((resolve) => endpoint?.listen(0, "127.0.0.1", resolve));
    metricsUrl = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/metrics`;
    prometheus = await startPrometheus({ targets: [{ job: "merch-test", url: metricsUrl }], scrapeIntervalMs: 1000 });
  },
  { timeout: 12 * 60_000 },
);

after(
  async () => {
    await prometheus?.stop();
    endpoint?.closeAllConnections();
    await new Promise((resolve) => endpoint?.close(resolve));
  },
  { timeout: 30_000 },
);

test("promtool accepts well-formed exposition text", { timeout: 60_000 }, async () => {
  assert.deepEqual(await checkMetrics(GOOD), { ok: true, problems: [] });
});

test("promtool reports a counter without _total as a lint problem", { timeout: 60_000 }, async () => {
  const result = await checkMetrics("# HELP merch_orders Orders.\n# TYPE merch_orders counter\nmerch_orders 3\n");
  assert.equal(result.ok, false);
  assert.deepEqual(result.problems, ['merch_orders counter metrics should have "_total" suffix']);
});

test("promtool reports a malformed line as an error", { timeout: 60_000 }, async () => {
  const result = await checkMetrics(`${GOOD}merch_broken{route="/x"} not-a-number\n`);
  assert.equal(result.ok, false);
  assert.equal(result.problems.length, 1);
  assert.match(result.problems[0] ?? "", /parsing error in line 7/);
});

test("Prometheus scrapes the endpoint and answers the series over its HTTP API", { timeout: 60_000 }, async () => {
  assert.ok(prometheus);
  assert.match(prometheus.url, /^http:\/\/127\.0\.0\.1:\d+$/);

  const series = await prometheus.waitForSeries('merch_test_requests_total{job="merch-test"}', 30_000);
  assert.equal(series.length, 1);
  assert.equal(series[0]?.metric.route, "/hello");
  assert.equal(series[0]?.value[1], "42");

  const [up] = await prometheus.waitForSeries('up{job="merch-test"}', 10_000);
  assert.equal(up?.value[1], "1");

  const targets = await prometheus.targets();
  assert.equal(targets.length, 1);
  assert.equal(targets[0]?.job, "merch-test");
  assert.equal(targets[0]?.url, metricsUrl);
  assert.equal(targets[0]?.health, "up");
  assert.ok(scrapes >= 1);
});
