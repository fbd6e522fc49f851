// Measuring one scenario: its load after a warm-up, and what it cost every process (CPU per
// request from /proc, peak memory), the log events and database work it caused, and which
// services it killed.
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { cpuDelta, peakRssMb, resetPeakRss, sampleCpu, sampleMachine, type Watched } from "./cpu.ts";
import type { LoadResult } from "./load.ts";
import { type DatabaseWork, type Measured, NODE_SERVICES, STORE_PROCESSES } from "./report.ts";
import { type Store, setStock } from "./store.ts";

export interface Scenario {
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

const BENCH: Watched[] = [
  // wrk and h2load run as children the bench waits for: their time arrives in its reaped-children time.
  { name: "wrk / h2load", pid: () => process.pid, reapedChildrenOnly: true },
  // The bench's own time: the load generator when it is one (RPCs, SQL, autocannon, the flash sale).
  { name: "bench process", pid: () => process.pid, ownOnly: true },
];

export interface MeasureOptions {
  warmupS: number;
  durationS: number;
  /** The products order scenarios buy, and the stock they get back before each. */
  productIds: readonly number[];
  stock: number;
}

export class Measurer {
  /** Processes watched besides the store's (Zipkin, while tracing runs). */
  extraWatched: Watched[] = [];
  /** The environment the services run with now (tracing adds to it): a restart keeps it. */
  servicesEnv: Record<string, string> = {};
  /** When each scenario's load ran, for cutting it out of a CPU profile. */
  readonly windows: { id: string; fromUs: bigint; toUs: bigint }[] = [];

  private readonly store: Store;
  private readonly opts: MeasureOptions;

  constructor(store: Store, opts: MeasureOptions) {
    this.store = store;
    this.opts = opts;
  }

  async measure(s: Scenario): Promise<Measured> {
    const { store, opts } = this;
    const watched = [...store.watched, ...this.extraWatched, ...BENCH];
    if (opts.warmupS > 0 && s.warmup !== false) {
      if (s.orders) await setStock(store.sql, opts.productIds, opts.stock);
      await s.run(opts.warmupS);
    }
    if (s.orders) await setStock(store.sql, opts.productIds, opts.stock);
    await s.prepare?.();
    await drainLogs(store);
    for (const name of NODE_SERVICES) resetPeakRss(store.stack.services[name].child.pid);
    const events = await publishedEvents(store);
    const db = await databaseMark(store);
    const machine = sampleMachine();
    const before = sampleCpu(watched);
    // The monotonic clock V8 stamps profile samples with: profile-summary.ts can cut this window out.
    const fromUs = process.hrtime.bigint() / 1000n;
    const result = await s.run(opts.durationS);
    this.windows.push({ id: s.id, fromUs, toUs: process.hrtime.bigint() / 1000n });
    // How busy the machine was while the load ran: the wait for the log pipeline to drain below
    // is mostly idle, and counted in it the figure said 28 % for a run that kept 1.5 cores busy.
    const machineLoaded = sampleMachine();
    const dead = await deadServices(store);
    if (dead.length === 0) await drainLogs(store);
    const cpu = cpuDelta(before, sampleCpu(watched));
    const machineAfter = sampleMachine();
    const published = (await publishedEvents(store)) - events;
    const database = await databaseSince(store, db);
    const n = Math.max(1, result.requests);
    const cpuMs = Object.fromEntries([...cpu].map(([name, seconds]) => [name, (1000 * seconds) / n]));
    const processes: readonly string[] = s.id === "bare" ? ["bare route"] : STORE_PROCESSES;
    const storeMs = processes.reduce((sum, p) => sum + (cpuMs[p] ?? 0), 0);
    const ours = [...cpu.values()].reduce((a, b) => a + b, 0);
    const total = machineAfter.total - machine.total;
    const busy = machineAfter.busy - machine.busy;
    const loadedBusyPct =
      (100 * (machineLoaded.busy - machine.busy)) / Math.max(1e-9, machineLoaded.total - machine.total);
    const m: Measured = {
      id: s.id,
      title: s.title,
      connections: s.connections,
      generator: s.generator,
      result,
      rps: result.requests / result.seconds,
      cpuMs,
      storeMs,
      busyPct: loadedBusyPct,
      foreignPct: (100 * Math.max(0, busy - ours)) / total,
      // The machine is shared: its 1-minute load average as the scenario ended, beside its figures.
      loadAvg: loadavg()[0] ?? Number.NaN,
      rssMb: Object.fromEntries(NODE_SERVICES.map((name) => [name, peakRssMb(store.stack.services[name].child.pid)])),
      eventsPerRequest: published / n,
      ...(database.orders > 0 ? { database } : {}),
      reproduce: `npm run bench -- --only ${s.id}`,
      ...(s.note || dead.length > 0 ? { note: [s.note, ...dead].filter(Boolean).join("; ") } : {}),
    };
    if (dead.length > 0) {
      // Its CPU went to the bench's reaped-children time (the "wrk / h2load" column) when it was reaped.
      console.error(`${dead.join("; ")} during "${s.title}": restarting the services`);
      await store.restartServices(this.servicesEnv);
    }
    console.error(
      `${s.title} @${s.connections}: ${m.rps.toFixed(0)} req/s, p50 ${result.p50.toFixed(1)} ms, p99 ${result.p99.toFixed(1)} ms, ` +
        `failed ${result.failed}, errors ${result.errors}${result.statuses ? ` ${JSON.stringify(result.statuses)}` : ""}; ` +
        `CPU ms/req ${Object.entries(cpuMs)
          .filter(([, v]) => v > 0)
          .map(([p, v]) => `${p} ${v.toFixed(3)}`)
          .join(", ")}; ` +
        `store ${storeMs.toFixed(3)}; machine busy ${m.busyPct.toFixed(0)} %, not ours ${m.foreignPct.toFixed(0)} %, load average ${m.loadAvg.toFixed(2)}`,
    );
    return m;
  }

  /** What each process spends with no load at all (pings, timers, Kafka's housekeeping), per second. */
  async idle(seconds: number): Promise<Record<string, number>> {
    await drainLogs(this.store);
    const watched = [...this.store.watched, ...this.extraWatched];
    const before = sampleCpu(watched);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const cpu = cpuDelta(before, sampleCpu(watched));
    return Object.fromEntries([...cpu].map(([name, s]) => [name, (1000 * s) / seconds]));
  }
}

async function publishedEvents(store: Store): Promise<number> {
  // /metrics is served on the metrics port only (issue 17): on the RPC port it is 404.
  const text = await (await fetch(store.stack.metricsUrls["log-service"])).text();
  return Number(/^log_events_published_total\s+(\d+)/m.exec(text)?.[1] ?? Number.NaN);
}

/**
 * Waits until what a scenario logged has reached Kafka: log-service's published count steady for
 * 300 ms (the gateway sends what it queued within 20 ms). Its cost then belongs to the scenario
 * that caused it. Only log-service's /metrics is asked: a request to the gateway would itself be
 * logged, and the count would never settle.
 */
async function drainLogs(store: Store): Promise<void> {
  const deadline = Date.now() + 15_000;
  let last = -1;
  let steady = 0;
  while (Date.now() < deadline) {
    const published = await publishedEvents(store);
    // A count that cannot be read would never be steady: every scenario waited 15 s for it.
    if (Number.isNaN(published)) throw new Error("log-service's metrics give no log_events_published_total");
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
async function deadServices(store: Store): Promise<string[]> {
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
async function databaseMark(store: Store): Promise<{ orderId: number; lsn: string }> {
  const [row] = await store.sql<{ id: number; lsn: string }[]>`
    SELECT coalesce(max(id), 0)::int AS id, pg_current_wal_lsn()::text AS lsn FROM orders`;
  return { orderId: row?.id ?? 0, lsn: row?.lsn ?? "0/0" };
}

/**
 * What the database did for a scenario's orders: how many, in how many transactions (all orders
 * of one transaction share its created_at, now() being the transaction's start), and the WAL
 * written meanwhile (everything, the pings and stock resets included).
 */
async function databaseSince(store: Store, mark: { orderId: number; lsn: string }): Promise<DatabaseWork> {
  const [row] = await store.sql<{ orders: number; transactions: number; wal: string }[]>`
    SELECT count(*)::int AS orders, count(DISTINCT created_at)::int AS transactions,
           pg_wal_lsn_diff(pg_current_wal_lsn(), ${mark.lsn}::pg_lsn)::text AS wal
    FROM orders WHERE id > ${mark.orderId}`;
  return { orders: row?.orders ?? 0, transactions: row?.transactions ?? 0, walBytes: Number(row?.wal ?? 0) };
}
