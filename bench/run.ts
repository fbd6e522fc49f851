// npm run bench: starts a fresh store (Kafka, a durable PostgreSQL, the three services) and a bare
// Fastify route, drives each scenario, and reports per scenario what it did (req/s, latency) and
// what it cost: CPU per request of every process, read from /proc before and after, and peak
// memory. Every ratio compares scenarios of the same run on the same machine. Writes the measured
// section of bench/results.md (which describes every option and scenario).
//   npm run bench [-- --quick] [--only id,id] [--duration 10] [--warmup 3] [--connections 32] [--users 64]
//                 [--tracing | --no-tracing] [--profile gateway|db-service|log-service]
//                 [--env service:NAME=value ...] [--logs DIR] [--loadgen wrk|autocannon]
//                 [--direct-client h2load|node] [--write | --no-write] [--out FILE]
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { OrderService, PlaceOrderRequestSchema } from "@merch/gen/merch/store/v1/order_pb";
import { CREDENTIAL_HEADER, GuardedSessionManager, sendServiceCredential } from "@merch/kit";
import type { ServiceName } from "@merch/testkit";
import { REPO_ROOT } from "@merch/testkit";
import { autocannonGenerator } from "./lib/autocannon.ts";
import { closedLoop } from "./lib/closed-loop.ts";
import { cpuDelta, peakRssMb, resetPeakRss, sampleCpu, sampleMachine, type Watched } from "./lib/cpu.ts";
import { type FlashSale, type FlashSaleResult, prepareFlashSale } from "./lib/flash-sale.ts";
import { h2loadGenerator } from "./lib/h2load.ts";
import type { HttpGenerator, HttpLoad, LoadResult } from "./lib/load.ts";
import { openCeiling } from "./lib/pg-ceiling.ts";
import {
  type DatabaseWork,
  type Measured,
  markdown,
  NODE_SERVICES,
  type Report,
  STORE_PROCESSES,
  writeResults,
} from "./lib/report.ts";
import { createProducts, registerShoppers, type Shopper, setStock, startStore } from "./lib/store.ts";
import { startTracing, type Tracing } from "./lib/tracing.ts";
import { wrkGenerator } from "./lib/wrk.ts";

const { values: args } = parseArgs({
  allowNegative: true,
  options: {
    /** A smoke run: 1 s of warm-up and 2 s per scenario, fewer shoppers, no tracing. */
    quick: { type: "boolean", default: false },
    duration: { type: "string" },
    warmup: { type: "string" },
    connections: { type: "string", default: "32" },
    users: { type: "string" },
    /** Scenario ids to run (comma-separated); the others are skipped. */
    only: { type: "string" },
    loadgen: { type: "string", default: "wrk" },
    /** What calls db-service directly: h2load, or connect-node in the bench process. */
    "direct-client": { type: "string", default: "h2load" },
    /** wrk threads: one leaves the other core to the store. */
    threads: { type: "string", default: "1" },
    tracing: { type: "boolean" },
    /** Runs one service with --cpu-prof; its profile is written when the bench stops it. */
    profile: { type: "string" },
    /** Extra environment for one service, repeatable: --env gateway:NODE_OPTIONS=--trace-gc */
    env: { type: "string", multiple: true },
    /** Writes each service's output to DIR/<service>.log when the bench ends. */
    logs: { type: "string" },
    write: { type: "boolean" },
    out: { type: "string", default: join(REPO_ROOT, "bench", "results.md") },
  },
});

const QUICK = args.quick;
const DURATION = Number(args.duration ?? (QUICK ? 2 : 10));
const WARMUP = Number(args.warmup ?? (QUICK ? 1 : 3));
const CONNECTIONS = Number(args.connections);
const USERS = Number(args.users ?? (QUICK ? 16 : 64));
const ONLY = args.only?.split(",").map((s) => s.trim());
const PROFILE = args.profile as ServiceName | undefined;
// Tracing needs Zipkin's JVM and a restart of the services: on in full runs, off in quick ones.
const TRACING = args.tracing ?? (!QUICK && (ONLY === undefined || ONLY.some((id) => id.includes("traced-"))));
// A partial or profiled run does not replace the full table in the results file.
const WRITE = args.write ?? (ONLY === undefined && PROFILE === undefined);
const STOCK = 10_000_000;
const FLASH_STOCK = 500;
const FLASH_BUYERS = 1000;
const SCALING = [1, 8, 32, 128];
for (const [name, v] of Object.entries({ DURATION, WARMUP, CONNECTIONS, USERS })) {
  if (!Number.isFinite(v) || v < (name === "WARMUP" ? 0 : 1)) throw new Error(`bad --${name.toLowerCase()}: ${v}`);
}
if (PROFILE !== undefined && !(NODE_SERVICES as readonly string[]).includes(PROFILE)) {
  throw new Error(`--profile takes one of ${NODE_SERVICES.join(", ")}`);
}
const wanted = (id: string) => ONLY === undefined || ONLY.includes(id);
// runService adds an exit guard per service it starts: restarts for tracing pass the default of 10.
process.setMaxListeners(50);
const serviceEnv: Partial<Record<ServiceName, Record<string, string>>> = {};
for (const entry of args.env ?? []) {
  const m = /^(gateway|db-service|log-service):([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(entry);
  if (!m) throw new Error(`--env takes service:NAME=value, got ${entry}`);
  const service = m[1] as ServiceName;
  serviceEnv[service] = { ...serviceEnv[service], [m[2] ?? ""]: m[3] ?? "" };
}

const http: HttpGenerator =
  args.loadgen === "autocannon"
    ? autocannonGenerator()
    : await wrkGenerator({ threads: Math.max(1, Number(args.threads)) });

// Installed (apt) only when the direct scenario first runs.
let h2loadReady: ReturnType<typeof h2loadGenerator> | undefined;
const h2load = () => {
  h2loadReady ??= h2loadGenerator();
  return h2loadReady;
};

const profileDir = PROFILE ? mkdtempSync(join(tmpdir(), "merch-profile-")) : undefined;
console.error("starting Kafka, PostgreSQL and the store...");
let tracing: Tracing | undefined;
if (PROFILE && profileDir) {
  const own = serviceEnv[PROFILE]?.NODE_OPTIONS;
  serviceEnv[PROFILE] = {
    ...serviceEnv[PROFILE],
    NODE_OPTIONS: `${own ? `${own} ` : ""}--cpu-prof --cpu-prof-dir=${profileDir}`,
  };
}
const store = await startStore({ serviceEnv });
const gatewayUrl = () => store.stack.gatewayUrl;

console.error(`registering and logging in ${USERS} shoppers...`);
const shoppers: Shopper[] = await registerShoppers(gatewayUrl(), USERS);
const tokens = shoppers.map((s) => s.token);
const tag = Date.now().toString(36);
// Every order scenario buys this one product, the scenarios compared with each other alike:
// h2load, in the direct scenario, can only repeat one body.
const productIds = await createProducts(store.sql, [`Bench product ${tag}`], STOCK);

// --- Measuring one scenario

const BENCH: Watched[] = [
  // wrk and h2load run as children the bench waits for: their time arrives in its reaped-children time.
  { name: "wrk / h2load", pid: () => process.pid, reapedChildrenOnly: true },
  // The bench's own time: the load generator when it is one (RPCs, SQL, autocannon, the flash sale).
  { name: "bench process", pid: () => process.pid, ownOnly: true },
];

async function publishedEvents(): Promise<number> {
  const text = await (await fetch(`${store.stack.services["log-service"].url}/metrics`)).text();
  return Number(/^log_events_published_total\s+(\d+)/m.exec(text)?.[1] ?? Number.NaN);
}

/**
 * Waits until what a scenario logged has reached Kafka: log-service's published count steady for
 * 300 ms (the gateway sends what it queued within 20 ms). Its cost then belongs to the scenario
 * that caused it. Only log-service's /metrics is asked: a request to the gateway would itself be
 * logged, and the count would never settle.
 */
async function drainLogs(): Promise<void> {
  const deadline = Date.now() + 15_000;
  let last = -1;
  let steady = 0;
  while (Date.now() < deadline) {
    const published = await publishedEvents();
    steady = published === last ? steady + 1 : 0;
    if (steady >= 3) return;
    last = published;
    await new Promise((r) => setTimeout(r, 100));
  }
  console.error("warning: the log pipeline did not drain within 15 s");
}

/**
 * The services that died during a scenario, with why (the fatal line of their output). Checked in
 * /proc, not by the child's exit event, which may not have been delivered yet.
 */
async function deadServices(): Promise<string[]> {
  // An exit takes a moment to show: a crash under load is often still under way when it ends.
  await new Promise((r) => setTimeout(r, 300));
  const dead: string[] = [];
  for (const service of Object.values(store.stack.services)) {
    const pid = service.child.pid;
    let state = "gone";
    try {
      state = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0] ?? "gone";
    } catch {}
    if (service.child.exitCode === null && service.child.signalCode === null && state !== "Z" && state !== "gone") {
      continue;
    }
    const fatal = /^.*(FATAL ERROR|Error:|uncaught).*$/m.exec(service.output())?.[0];
    dead.push(`${service.name} died${fatal ? ` (${fatal.trim().slice(0, 120)})` : ""}`);
  }
  return dead;
}

/** Where the order table and the WAL stood before a scenario. */
async function databaseMark(): Promise<{ orderId: number; lsn: string }> {
  const [row] = await store.sql<{ id: number; lsn: string }[]>`
    SELECT coalesce(max(id), 0)::int AS id, pg_current_wal_lsn()::text AS lsn FROM orders`;
  return { orderId: row?.id ?? 0, lsn: row?.lsn ?? "0/0" };
}

/**
 * What the database did for a scenario's orders: how many, in how many transactions (all orders
 * of one transaction share its created_at, now() being the transaction's start), and the WAL
 * written meanwhile (everything, the pings and stock resets included).
 */
async function databaseSince(mark: { orderId: number; lsn: string }): Promise<DatabaseWork> {
  const [row] = await store.sql<{ orders: number; transactions: number; wal: string }[]>`
    SELECT count(*)::int AS orders, count(DISTINCT created_at)::int AS transactions,
           pg_wal_lsn_diff(pg_current_wal_lsn(), ${mark.lsn}::pg_lsn)::text AS wal
    FROM orders WHERE id > ${mark.orderId}`;
  return { orders: row?.orders ?? 0, transactions: row?.transactions ?? 0, walBytes: Number(row?.wal ?? 0) };
}

interface Scenario {
  id: string;
  title: string;
  connections: number;
  /** Places orders: stock is set back before it runs. */
  orders: boolean;
  generator: string;
  run(durationS: number): Promise<LoadResult>;
  /** False for what cannot be repeated (the flash sale). */
  warmup?: boolean;
  /** Runs before the measurement starts (the flash sale's buyers connect). */
  prepare?: () => Promise<void>;
  note?: string;
}

let extraWatched: Watched[] = [];
/** When each scenario's load ran, for cutting it out of a CPU profile. */
const windows: { id: string; fromUs: bigint; toUs: bigint }[] = [];
/** The environment the services run with now (tracing adds to it). */
let servicesEnv: Record<string, string> = {};

async function measure(s: Scenario): Promise<Measured> {
  const watched = [...store.watched, ...extraWatched, ...BENCH];
  if (WARMUP > 0 && s.warmup !== false) {
    if (s.orders) await setStock(store.sql, productIds, STOCK);
    await s.run(WARMUP);
  }
  if (s.orders) await setStock(store.sql, productIds, STOCK);
  await s.prepare?.();
  await drainLogs();
  for (const name of NODE_SERVICES) resetPeakRss(store.stack.services[name].child.pid);
  const events = await publishedEvents();
  const db = await databaseMark();
  const machine = sampleMachine();
  const before = sampleCpu(watched);
  // The monotonic clock V8 stamps profile samples with: profile-summary.ts can cut this window out.
  const fromUs = process.hrtime.bigint() / 1000n;
  const result = await s.run(DURATION);
  windows.push({ id: s.id, fromUs, toUs: process.hrtime.bigint() / 1000n });
  const dead = await deadServices();
  if (dead.length === 0) await drainLogs();
  const cpu = cpuDelta(before, sampleCpu(watched));
  const machineAfter = sampleMachine();
  const published = (await publishedEvents()) - events;
  const database = await databaseSince(db);
  const n = Math.max(1, result.requests);
  const cpuMs = Object.fromEntries([...cpu].map(([name, seconds]) => [name, (1000 * seconds) / n]));
  const processes: readonly string[] = s.id === "bare" ? ["bare route"] : STORE_PROCESSES;
  const storeMs = processes.reduce((sum, p) => sum + (cpuMs[p] ?? 0), 0);
  const ours = [...cpu.values()].reduce((a, b) => a + b, 0);
  const total = machineAfter.total - machine.total;
  const busy = machineAfter.busy - machine.busy;
  const m: Measured = {
    id: s.id,
    title: s.title,
    connections: s.connections,
    generator: s.generator,
    result,
    rps: result.requests / result.seconds,
    cpuMs,
    storeMs,
    busyPct: (100 * busy) / total,
    foreignPct: (100 * Math.max(0, busy - ours)) / total,
    rssMb: Object.fromEntries(NODE_SERVICES.map((name) => [name, peakRssMb(store.stack.services[name].child.pid)])),
    eventsPerRequest: published / n,
    ...(database.orders > 0 ? { database } : {}),
    reproduce: `npm run bench -- --only ${s.id}`,
    ...(s.note || dead.length > 0 ? { note: [s.note, ...dead].filter(Boolean).join("; ") } : {}),
  };
  if (dead.length > 0) {
    // Its CPU went to the bench's reaped-children time (the "wrk / h2load" column) when it was reaped.
    console.error(`${dead.join("; ")} during "${s.title}": restarting the services`);
    await store.restartServices(servicesEnv);
  }
  console.error(
    `${s.title} @${s.connections}: ${m.rps.toFixed(0)} req/s, p50 ${result.p50.toFixed(1)} ms, p99 ${result.p99.toFixed(1)} ms, ` +
      `failed ${result.failed}, errors ${result.errors}${result.statuses ? ` ${JSON.stringify(result.statuses)}` : ""}; ` +
      `CPU ms/req ${Object.entries(cpuMs)
        .filter(([, v]) => v > 0)
        .map(([p, v]) => `${p} ${v.toFixed(3)}`)
        .join(", ")}; ` +
      `store ${storeMs.toFixed(3)}; machine busy ${m.busyPct.toFixed(0)} %, not ours ${m.foreignPct.toFixed(0)} %`,
  );
  return m;
}

// --- The scenarios

const json = { "content-type": "application/json" };
const httpScenario = (
  id: string,
  title: string,
  load: () => HttpLoad,
  opts: { orders?: boolean; connections?: number; note?: string } = {},
): Scenario => {
  const connections = opts.connections ?? CONNECTIONS;
  return {
    id,
    title,
    connections,
    orders: opts.orders ?? false,
    generator: http.name,
    run: (durationS) => http.run({ load: load(), connections, durationS }),
    ...(opts.note ? { note: opts.note } : {}),
  };
};
const productLoad = (): HttpLoad => ({
  url: gatewayUrl(),
  method: "GET",
  paths: [1, 2, 3].map((i) => `/products/${i}`),
});
const ordersLoad = (idempotencyKey: boolean) => (): HttpLoad => ({
  url: gatewayUrl(),
  method: "POST",
  paths: ["/orders"],
  headers: json,
  tokens,
  bodies: productIds.map((id) => JSON.stringify({ product_id: id, quantity: 1 })),
  idempotencyKey,
});

/**
 * db-service's PlaceOrder called as the gateway calls it: Connect binary over one h2c connection
 * with a deadline, `CONNECTIONS` calls in flight. h2load (C) sends it by default; `--direct-client
 * node` uses connect-node, the gateway's own client, at a higher CPU cost in the bench.
 */
function directScenario(): Scenario {
  const { url } = store.stack.services["db-service"];
  const title = "db-service `PlaceOrder` direct (Connect binary, h2c)";
  const base = { id: "db-direct", title, connections: CONNECTIONS, orders: true };
  if (args["direct-client"] !== "node") {
    const shopper = shoppers[0] as Shopper;
    // h2load repeats one body: one shopper, and no key (db-service then makes one per call, as
    // the gateway does): a key of ours would make every call after the first a replay.
    const body = toBinary(
      PlaceOrderRequestSchema,
      create(PlaceOrderRequestSchema, {
        session: { userId: shopper.userId, sessionId: shopper.sessionId },
        productId: productIds[0] ?? 0,
        quantity: 1,
      }),
    );
    return {
      ...base,
      generator: "h2load",
      note: "one shopper",
      run: async (durationS) =>
        (await h2load()).run(
          {
            url: `${url}/${OrderService.typeName}/PlaceOrder`,
            headers: {
              "content-type": "application/proto",
              "connect-protocol-version": "1",
              // The gateway's RPC_TIMEOUT_MS: with a deadline, db-service bounds each batch's statements.
              "connect-timeout-ms": "5000",
              [CREDENTIAL_HEADER]: store.stack.serviceCredential,
            },
            body,
          },
          CONNECTIONS,
          durationS,
        ),
    };
  }
  const sessions = new GuardedSessionManager(url);
  const transport = createConnectTransport({
    baseUrl: url,
    httpVersion: "2",
    useBinaryFormat: true,
    sessionManager: sessions,
    defaultTimeoutMs: 5000,
    interceptors: [sendServiceCredential(store.stack.serviceCredential)],
  });
  const orders = createClient(OrderService, transport);
  let n = 0;
  return {
    ...base,
    generator: "bench process (connect-node)",
    async run(durationS) {
      return closedLoop(
        async (i) => {
          const s = shoppers[i % shoppers.length] as Shopper;
          try {
            await orders.placeOrder({
              session: { userId: s.userId, sessionId: s.sessionId },
              productId: productIds[i % productIds.length] ?? 0,
              quantity: 1,
              // As the gateway does for an order without a key of the client's.
              idempotencyKey: `bench:${process.pid}:${++n}`,
            });
            return "ok";
          } catch (err) {
            if (err instanceof ConnectError) return `rpc ${Code[err.code]}: ${err.rawMessage.slice(0, 60)}`;
            throw err;
          }
        },
        CONNECTIONS,
        durationS,
      );
    },
  };
}

let ceilingSql: string[] | undefined;
let ceilingBatch: { batches: number; orders: number } | undefined;
function ceilingScenario(): Scenario {
  let n = 0;
  return {
    id: "pg-ceiling",
    title: "PostgreSQL ceiling (order statements, batched as db-service)",
    connections: CONNECTIONS,
    orders: true,
    generator: "bench process",
    async run(durationS) {
      const ceiling = openCeiling(store.databaseUrl);
      ceilingSql = ceiling.statements;
      try {
        return await closedLoop(
          (i) => {
            const s = shoppers[i % shoppers.length] as Shopper;
            return ceiling.place({
              userId: s.userId,
              sessionId: s.sessionId,
              productId: productIds[i % productIds.length] ?? 0,
              quantity: 1,
              key: `db-service:${process.pid}:${++n}`,
            });
          },
          CONNECTIONS,
          durationS,
        );
      } finally {
        ceilingBatch = ceiling.stats();
        await ceiling.close();
      }
    },
  };
}

const scenarios: Scenario[] = [
  httpScenario("bare", "bare Fastify route (ceiling)", () => ({ url: store.bareUrl, method: "GET", paths: ["/"] })),
  httpScenario("product", "`GET /products/{id}`", productLoad),
  httpScenario("shop-product", "Shop `GetProduct` (Connect JSON)", () => ({
    url: gatewayUrl(),
    method: "POST",
    paths: ["/merch.shop.v1.ShopService/GetProduct"],
    headers: json,
    bodies: [1, 2, 3].map((id) => JSON.stringify({ id })),
  })),
  httpScenario("orders", "`POST /orders`", ordersLoad(false), { orders: true }),
  httpScenario("orders-key", "`POST /orders` + Idempotency-Key", ordersLoad(true), { orders: true }),
  httpScenario(
    "shop-orders",
    "Shop `PlaceOrder` (Connect JSON)",
    () => ({
      url: gatewayUrl(),
      method: "POST",
      paths: ["/merch.shop.v1.ShopService/PlaceOrder"],
      headers: json,
      tokens,
      bodies: productIds.map((productId) => JSON.stringify({ productId, quantity: 1 })),
    }),
    { orders: true },
  ),
  directScenario(),
  ceilingScenario(),
  ...SCALING.filter((c) => c !== CONNECTIONS).map((c) =>
    httpScenario(`scale-${c}`, `\`POST /orders\` at ${c} connections`, ordersLoad(false), {
      orders: true,
      connections: c,
    }),
  ),
];

/**
 * Before anything is measured, the services' hot paths are compiled: without this, whichever
 * order scenario runs first pays for the JIT (in 2 s quick runs, a third of its throughput).
 */
async function warmUpStore(seconds: number): Promise<void> {
  console.error(`warming up the store for ${2 * seconds} s...`);
  await setStock(store.sql, productIds, STOCK);
  await http.run({ load: productLoad(), connections: CONNECTIONS, durationS: seconds });
  await http.run({ load: ordersLoad(false)(), connections: CONNECTIONS, durationS: seconds });
}
await warmUpStore(QUICK ? 3 : 5);

const measured: Measured[] = [];
for (const s of scenarios) if (wanted(s.id)) measured.push(await measure(s));

/** What each process spends with no load at all (pings, timers, Kafka's housekeeping), per second. */
async function measureIdle(seconds: number): Promise<Record<string, number>> {
  await drainLogs();
  const watched = [...store.watched, ...extraWatched];
  const before = sampleCpu(watched);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const cpu = cpuDelta(before, sampleCpu(watched));
  return Object.fromEntries([...cpu].map(([name, s]) => [name, (1000 * s) / seconds]));
}
// Measured after the steady scenarios, when start-up's work (JIT, the first collections) is over.
const idleMsPerS = await measureIdle(QUICK ? 2 : 5);
console.error(
  `idle, CPU ms per second: ${Object.entries(idleMsPerS)
    .map(([p, v]) => `${p} ${v.toFixed(1)}`)
    .join(", ")}`,
);

// --- The flash sale: its own product, stock 500, 1,000 buyers at once.

let flash: Report["flash"];
if (wanted("flash")) {
  const [productId] = await createProducts(store.sql, [`Bench flash sale ${tag}`], FLASH_STOCK);
  if (productId === undefined) throw new Error("no flash-sale product");
  let buyers: FlashSale | undefined;
  let sale: FlashSaleResult | undefined;
  const m = await measure({
    id: "flash",
    title: `flash sale (${FLASH_BUYERS} buyers, stock ${FLASH_STOCK})`,
    connections: FLASH_BUYERS,
    orders: false,
    generator: "bench process",
    // A flash sale has no warm-up and no duration: it ends when every buyer has an answer.
    warmup: false,
    async prepare() {
      buyers = await prepareFlashSale({ baseUrl: gatewayUrl(), productId, buyers: FLASH_BUYERS, tokens });
    },
    async run() {
      if (!buyers) throw new Error("the buyers did not connect");
      sale = await buyers.fire();
      buyers.close();
      return {
        requests: sale.buyers,
        seconds: sale.allAnsweredMs / 1000,
        p50: sale.p50,
        p99: sale.p99,
        max: sale.allAnsweredMs,
        failed: sale.buyers - sale.created,
        errors: Object.values(sale.other).reduce((a, b) => a + b, 0),
        statuses: { "201": sale.created, "409 insufficient_stock": sale.soldOut, "5xx": sale.server, ...sale.other },
      };
    },
  });
  measured.push(m);
  const [row] = await store.sql<{ stock: number; orders: number }[]>`
    SELECT p.stock, (SELECT count(*)::int FROM orders o WHERE o.product_id = p.id) AS orders
    FROM products p WHERE p.id = ${productId}`;
  if (sale) {
    flash = {
      ...sale,
      stockLeft: row?.stock ?? Number.NaN,
      ordersRows: row?.orders ?? Number.NaN,
      reproduce: "`npm run bench -- --only flash`",
      ...(m.note ? { note: m.note } : {}),
    };
  }
}

// --- Tracing off and on (issue 12): each on freshly started services, so that the two differ in
// tracing alone (a gateway that has served the whole run costs more per request than a new one).

let tracingReport: Report["tracing"];
const TRACED = ["product", "orders"].filter((id) => wanted(`traced-${id}`) || wanted(`untraced-${id}`));
if (TRACING && TRACED.length > 0) {
  const pair = (on: boolean) =>
    [
      httpScenario(
        `${on ? "traced" : "untraced"}-product`,
        `\`GET /products/{id}\`, fresh services, tracing ${on ? "on" : "off"}`,
        productLoad,
      ),
      httpScenario(
        `${on ? "traced" : "untraced"}-orders`,
        `\`POST /orders\`, fresh services, tracing ${on ? "on" : "off"}`,
        ordersLoad(false),
        { orders: true },
      ),
    ].filter((s) => TRACED.some((id) => s.id.endsWith(`-${id}`)));
  console.error("starting Zipkin; restarting the services without tracing...");
  tracing = await startTracing();
  extraWatched = tracing.watched;
  await store.restartServices(servicesEnv);
  for (const s of pair(false)) measured.push(await measure(s));
  console.error("restarting the services with OTEL_EXPORTER_OTLP_ENDPOINT...");
  servicesEnv = tracing.env;
  await store.restartServices(servicesEnv);
  const before = tracing.spans();
  for (const s of pair(true)) measured.push(await measure(s));
  // Exporters send in batches: give the last one time to arrive before counting.
  await new Promise((r) => setTimeout(r, 6000));
  const spans = tracing.spans() - before;
  tracingReport = {
    spans,
    note:
      spans > 0
        ? `the collector (Zipkin, fed by the OTLP receiver in the bench process) received ${spans} spans during the traced scenarios.`
        : "the collector received **no spans**: the services do not export traces yet (issue 12), so the traced rows measure only the collector's idle cost. The hook is `bench/lib/tracing.ts`.",
  };
}

// --- Report

const commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: REPO_ROOT }).toString().trim();
const dirty = execFileSync("git", ["status", "--porcelain"], { cwd: REPO_ROOT }).toString().trim() !== "";
const report: Report = {
  measured,
  idleMsPerS,
  ...(flash ? { flash } : {}),
  ...(tracingReport ? { tracing: tracingReport } : {}),
  ...(ceilingSql ? { ceilingSql } : {}),
  ...(ceilingBatch ? { ceilingBatch } : {}),
  header: {
    commit,
    dirty,
    machine: `${cpus().length} × ${cpus()[0]?.model ?? "?"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
    started: new Date().toISOString(),
    settings:
      `${QUICK ? "**Quick run** (`--quick`): " : ""}${CONNECTIONS} connections unless stated, ${WARMUP} s of warm-up and ${DURATION} s measured per scenario, ` +
      `${USERS} shoppers; HTTP load from ${http.name}${http.name === "wrk" ? ` (${args.threads} thread)` : ""}; the load generator, the store, PostgreSQL (fsync on) and Kafka (acks=all) share the machine. ` +
      `"not ours" is the machine's CPU used by processes outside this run (other work on a shared machine); rows where it passed 15 % are marked ⚠ as noisy.`,
  },
};
const section = markdown(report);
console.log(`\n${section}`);
if (WRITE) {
  writeResults(args.out, section);
  console.error(`wrote ${args.out}`);
}

const outputs = Object.values(store.stack.services).map((s) => [s.name, s.output()] as const);
await store.stop();
await tracing?.stop();
if (args.logs) {
  mkdirSync(args.logs, { recursive: true });
  // Captured output of the services as they ran last (after a restart: the new ones).
  for (const [name, text] of outputs) writeFileSync(join(args.logs, `${name}.log`), text);
  console.error(`services' output in ${args.logs}`);
}
if (profileDir) {
  const files = readdirSync(profileDir).filter((f) => f.endsWith(".cpuprofile"));
  console.error(`\n${PROFILE}'s CPU profile: summarise one scenario's load with`);
  for (const file of files) {
    for (const w of windows) {
      console.error(`  node bench/profile-summary.ts ${join(profileDir, file)} 40 ${w.fromUs} ${w.toUs}   # ${w.id}`);
    }
  }
}
