// npm run bench: drives the running store over HTTP with autocannon and writes bench/results.md.
// Starts its own store (PostgreSQL, Kafka, the three services) and a bare Fastify route as the
// ceiling, so every figure is a ratio measured in the same run on the same machine.
//   node bench/run.ts [--duration 10] [--connections 32] [--only name,name]
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startKafka } from "@merch/devstack/kafka";
import { REPO_ROOT } from "@merch/devstack/paths";
import { startStack } from "@merch/devstack/stack";
import autocannon from "autocannon";

const { values } = parseArgs({
  options: {
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "32" },
    only: { type: "string" },
    out: { type: "string", default: join(REPO_ROOT, "bench", "results.md") },
  },
});
const DURATION = Number(values.duration);
const CONNECTIONS = Number(values.connections);

type Request = autocannon.Request;
interface Scenario {
  name: string;
  url: string;
  requests: Request[];
  /** Statuses that count as success. */
  ok?: number[];
}
interface Result {
  name: string;
  /** Log events log-service published to Kafka while the scenario ran, per second. */
  events: number;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
  total: number;
}

const dataDir = mkdtempSync(join(tmpdir(), "merch-bench-"));
chmodSync(dataDir, 0o755);
console.error("starting Kafka and the store...");
const kafka = await startKafka();
const stack = await startStack({
  dataDir,
  kafkaBrokers: kafka.brokers,
  jwtSecret: "bench-secret-0123456789abcdef0123456789abcdef",
  output: "capture",
  env: { LOG_LEVEL: "warn" },
});
const bare = spawn(process.execPath, [join(REPO_ROOT, "bench", "bare-server.ts")], {
  stdio: ["ignore", "pipe", "inherit"],
});
const barePort = await new Promise<number>((resolve) =>
  bare.stdout.on("data", (d: Buffer) => {
    const m = /listening (\d+)/.exec(d.toString());
    if (m) resolve(Number(m[1]));
  }),
);
const base = stack.gatewayUrl;

async function json<T>(method: string, path: string, body?: unknown, token?: string): Promise<T> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

// One shopper per connection, so no account's login throttle or row lock is shared by all.
const shoppers: { username: string; password: string; token: string; orderId: number }[] = [];
for (let i = 0; i < CONNECTIONS; i++) {
  const account = {
    sid: `BENCH${i}`,
    username: `bench_${i}`,
    email: `bench${i}@example.com`,
    password: "bench password",
  };
  await json("POST", "/users/register", account);
  const { token } = await json<{ token: string }>("POST", "/users/login", {
    username: account.username,
    password: account.password,
  });
  const order = await json<{ id: number }>("POST", "/orders", { product_id: 1 + (i % 3), quantity: 1 }, token);
  shoppers.push({ username: account.username, password: account.password, token, orderId: order.id });
}

let next = 0;
interface Ctx {
  shopper?: (typeof shoppers)[number];
  orderId?: number;
}
function shopper(ctx: Ctx) {
  ctx.shopper ??= shoppers[next++ % shoppers.length];
  return ctx.shopper as (typeof shoppers)[number];
}
const authed = (req: Request, ctx: Ctx): Request => ({
  ...req,
  headers: { ...req.headers, authorization: `Bearer ${shopper(ctx).token}` },
});
const jsonHeaders = { "content-type": "application/json" };
const placeOrder: Request = {
  method: "POST",
  path: "/orders",
  headers: jsonHeaders,
  setupRequest: (req, ctx) =>
    authed({ ...req, body: JSON.stringify({ product_id: 1 + (next % 3), quantity: 1 }) }, ctx as Ctx),
  onResponse: (status, body, ctx) => {
    if (status === 201) (ctx as Ctx).orderId = (JSON.parse(body) as { id: number }).id;
  },
};
const cancelOrder: Request = {
  method: "POST",
  setupRequest: (req, ctx) => authed({ ...req, path: `/orders/${(ctx as Ctx).orderId ?? 0}/cancel` }, ctx as Ctx),
};

const scenarios: Scenario[] = [
  {
    name: "bare Fastify route (ceiling)",
    url: `http://127.0.0.1:${barePort}`,
    requests: [{ method: "GET", path: "/" }],
  },
  { name: "GET /products", url: base, requests: [{ method: "GET", path: "/products" }] },
  {
    name: "GET /products/{id}",
    url: base,
    requests: [{ method: "GET", setupRequest: (req) => ({ ...req, path: `/products/${1 + (next++ % 3)}` }) }],
  },
  {
    name: "POST /users/login",
    url: base,
    requests: [
      {
        method: "POST",
        path: "/users/login",
        headers: jsonHeaders,
        setupRequest: (req, ctx) => {
          const s = shopper(ctx as Ctx);
          return { ...req, body: JSON.stringify({ username: s.username, password: s.password }) };
        },
      },
    ],
  },
  { name: "POST /orders (+ cancel)", url: base, requests: [placeOrder, cancelOrder], ok: [200, 201] },
  {
    name: "GET /orders/{id}",
    url: base,
    requests: [
      {
        method: "GET",
        setupRequest: (req, ctx) => authed({ ...req, path: `/orders/${shopper(ctx as Ctx).orderId}` }, ctx as Ctx),
      },
    ],
  },
  {
    name: "mixed shopper flow",
    url: base,
    requests: [
      { method: "GET", path: "/products" },
      { method: "GET", path: "/products/2" },
      placeOrder,
      {
        method: "GET",
        setupRequest: (req, ctx) => authed({ ...req, path: `/orders/${(ctx as Ctx).orderId}` }, ctx as Ctx),
      },
      { method: "GET", setupRequest: (req, ctx) => authed({ ...req, path: "/orders?limit=10" }, ctx as Ctx) },
      cancelOrder,
    ],
    ok: [200, 201],
  },
];

async function publishedEvents(): Promise<number> {
  const text = await (await fetch(`${stack.services["log-service"].url}/metrics`)).text();
  const m = /^log_events_published_total\s+(\d+)/m.exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

async function run(s: Scenario, duration: number): Promise<Result> {
  const published = await publishedEvents();
  const started = performance.now();
  const result = await autocannon({
    url: s.url,
    connections: CONNECTIONS,
    duration,
    requests: s.requests,
    initialContext: {},
  });
  const events = ((await publishedEvents()) - published) / ((performance.now() - started) / 1000);
  return {
    name: s.name,
    events,
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    total: result.requests.total,
  };
}

const only = values.only?.split(",");
const results: Result[] = [];
const published = { before: await publishedEvents() };
for (const s of scenarios) {
  if (only && !only.some((o) => s.name.includes(o)) && !s.name.startsWith("bare")) continue;
  console.error(`${s.name}: warming up...`);
  await run(s, 3);
  const r = await run(s, DURATION);
  console.error(
    `${s.name}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms, errors ${r.errors}, non-2xx ${r.non2xx}`,
  );
  results.push(r);
}

// The log pipeline: every request above became an event on Kafka; wait until log-service has
// published all the gateway queued, then rate = events / wall time of the whole run.
let health = await json<{ log_events: { queued: number; in_flight: number; delivered: number; dropped: number } }>(
  "GET",
  "/healthz",
);
for (let i = 0; i < 100 && health.log_events.queued + health.log_events.in_flight > 0; i++) {
  await new Promise((r) => setTimeout(r, 200));
  health = await json("GET", "/healthz");
}
const events = (await publishedEvents()) - published.before;

function peakRss(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? Number.NaN) / 1024;
}
const memory = Object.values(stack.services).map((s) => ({ name: s.name, mb: peakRss(s.child.pid) }));

const ceiling = results[0]?.rps ?? Number.NaN;
const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: REPO_ROOT }).toString().trim();
const dirty = execFileSync("git", ["status", "--porcelain"], { cwd: REPO_ROOT }).toString().trim() !== "";
const lines = [
  "| scenario | req/s | vs ceiling | p50 ms | p99 ms | errors | non-2xx | requests | log events/s to Kafka |",
  "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ...results.map(
    (r) =>
      `| ${r.name} | ${r.rps.toFixed(0)} | ${((100 * r.rps) / ceiling).toFixed(1)} % | ${r.p50} | ${r.p99} | ${r.errors} | ${r.non2xx} | ${r.total} | ${r.name.startsWith("bare") ? "–" : r.events.toFixed(0)} |`,
  ),
];
const table = lines.join("\n");
const summary = `${table}

Log pipeline: every request above is an event from the gateway to log-service to Kafka
(\`acks=all\`); the last column is how many log-service published per second while each scenario
ran. Over the whole run, ${events} events were acknowledged by Kafka, the gateway dropped
${health.log_events.dropped}, and ${health.log_events.queued + health.log_events.in_flight} were still waiting when the run ended.

Peak resident memory (VmHWM): ${memory.map((m) => `${m.name} ${m.mb.toFixed(0)} MB`).join(", ")}.

Machine: ${cpus().length} × ${cpus()[0]?.model ?? "?"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; Node ${process.version};
${new Date().toISOString()}; commit ${commit}${dirty ? " (with uncommitted changes)" : ""};
${CONNECTIONS} connections, ${DURATION} s per scenario after 3 s of warm-up; autocannon, the store and Kafka on the same machine.
`;
console.log(`\n${summary}`);
// The measured part of the results file is replaced; what was written around it (the findings) stays.
const START = "<!-- bench:start -->";
const END = "<!-- bench:end -->";
const previous = existsSync(values.out) ? readFileSync(values.out, "utf8") : `# Benchmarks\n\n${START}\n${END}\n`;
const [head, rest] = previous.includes(START) ? previous.split(START) : [`${previous}\n`, `\n${END}\n`];
const tail = (rest ?? "").split(END)[1] ?? "\n";
writeFileSync(values.out, `${head}${START}\n${summary}${END}${tail}`);

bare.kill("SIGTERM");
await stack.stop();
await kafka.stop();
rmSync(dataDir, { recursive: true, force: true });
rmSync(kafka.dataDir, { recursive: true, force: true });
