// npm run bench: starts a fresh store (Kafka, a durable PostgreSQL, the three services) and a bare
// Fastify route, drives each scenario, and reports per scenario what it did (req/s, latency) and
// what it cost: CPU per request of every process, read from /proc before and after, and peak
// memory. Every ratio compares scenarios of the same run on the same machine. Writes the measured
// section of bench/results.md (which describes every option and scenario).
//   npm run bench [-- --quick] [--only id,id] [--duration 10] [--warmup 3] [--connections 32] [--users 64]
//                 [--tracing | --no-tracing] [--profile gateway|db-service|log-service]
//                 [--env service:NAME=value ...] [--logs DIR] [--loadgen wrk|autocannon]
//                 [--direct-client h2load|node] [--write | --no-write] [--out FILE]
// The parts: lib/options.ts (the command line), lib/store.ts (the store under test),
// lib/scenarios.ts, lib/flash-scenario.ts and lib/tracing-scenarios.ts (what is driven),
// lib/measure.ts (what one scenario cost), lib/report.ts (the tables and checks).
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "@merch/testkit";
import { autocannonGenerator } from "./lib/autocannon.ts";
import { measureFlashSale } from "./lib/flash-scenario.ts";
import type { HttpGenerator } from "./lib/load.ts";
import { Measurer } from "./lib/measure.ts";
import { type BenchOptions, benchOptions, STOCK, wanted } from "./lib/options.ts";
import { type Measured, markdown, type Report, writeResults } from "./lib/report.ts";
import { type CeilingSeen, loads, type ScenarioContext, steadyScenarios } from "./lib/scenarios.ts";
import { createProducts, registerShoppers, setStock, startStore } from "./lib/store.ts";
import { measureTracing } from "./lib/tracing-scenarios.ts";
import { wrkGenerator } from "./lib/wrk.ts";

const options = benchOptions();
// runService adds an exit guard per service it starts: restarts for tracing pass the default of 10.
process.setMaxListeners(50);

const http: HttpGenerator =
  options.loadgen === "autocannon" ? autocannonGenerator() : await wrkGenerator({ threads: options.threads });

const profileDir = options.profile ? mkdtempSync(join(tmpdir(), "merch-profile-")) : undefined;
console.error("starting Kafka, PostgreSQL and the store...");
if (options.profile && profileDir) {
  const own = options.serviceEnv[options.profile]?.NODE_OPTIONS;
  options.serviceEnv[options.profile] = {
    ...options.serviceEnv[options.profile],
    NODE_OPTIONS: `${own ? `${own} ` : ""}--cpu-prof --cpu-prof-dir=${profileDir}`,
  };
}
const store = await startStore({ serviceEnv: options.serviceEnv });

console.error(`registering and logging in ${options.users} shoppers...`);
const shoppers = await registerShoppers(store.stack.gatewayUrl, options.users);
const tag = Date.now().toString(36);
// Every order scenario buys this one product, the scenarios compared with each other alike:
// h2load, in the direct scenario, can only repeat one body.
const productIds = await createProducts(store.sql, [`Bench product ${tag}`], STOCK);
const ctx: ScenarioContext = { store, options, http, shoppers, productIds };
const measurer = new Measurer(store, {
  warmupS: options.warmupS,
  durationS: options.durationS,
  productIds,
  stock: STOCK,
});

// Before anything is measured, the services' hot paths are compiled: without this, whichever
// order scenario runs first pays for the JIT (in 2 s quick runs, a third of its throughput).
const warmUpS = options.quick ? 3 : 5;
console.error(`warming up the store for ${2 * warmUpS} s...`);
await setStock(store.sql, productIds, STOCK);
await http.run({ load: loads(ctx).products(), connections: options.connections, durationS: warmUpS });
await http.run({ load: loads(ctx).orders(false)(), connections: options.connections, durationS: warmUpS });

const measured: Measured[] = [];
const ceiling: CeilingSeen = {
  storeBatch() {
    const work = measured.find((m) => m.id === "orders")?.database;
    return work && work.transactions > 0 ? work.orders / work.transactions : undefined;
  },
};
for (const s of steadyScenarios(ctx, ceiling)) if (wanted(options, s.id)) measured.push(await measurer.measure(s));

// Measured after the steady scenarios, when start-up's work (JIT, the first collections) is over.
const idleMsPerS = await measurer.idle(options.quick ? 2 : 5);
console.error(
  `idle, CPU ms per second: ${Object.entries(idleMsPerS)
    .map(([p, v]) => `${p} ${v.toFixed(1)}`)
    .join(", ")}`,
);

let flash: Report["flash"];
if (wanted(options, "flash")) {
  const sale = await measureFlashSale(measurer, store, shoppers, tag);
  measured.push(sale.measured);
  flash = sale.flash;
}

const traced = await measureTracing(measurer, ctx);
if (traced) measured.push(...traced.measured);

const report: Report = {
  measured,
  idleMsPerS,
  ...(flash ? { flash } : {}),
  ...(traced?.report ? { tracing: traced.report } : {}),
  ...(ceiling.statements ? { ceilingSql: ceiling.statements } : {}),
  ...(ceiling.batchSize ? { ceilingBatchSize: ceiling.batchSize } : {}),
  ...(ceiling.batch ? { ceilingBatch: ceiling.batch } : {}),
  header: reportHeader(options, http),
};
const section = markdown(report);
console.log(`\n${section}`);
if (options.write) {
  writeResults(options.out, section);
  console.error(`wrote ${options.out}`);
}

const outputs = Object.values(store.stack.services).map((s) => [s.name, s.output()] as const);
await store.stop();
await traced?.tracing.stop();
if (options.logs) {
  mkdirSync(options.logs, { recursive: true });
  // Captured output of the services as they ran last (after a restart: the new ones).
  for (const [name, text] of outputs) writeFileSync(join(options.logs, `${name}.log`), text);
  console.error(`services' output in ${options.logs}`);
}
if (profileDir) {
  const files = readdirSync(profileDir).filter((f) => f.endsWith(".cpuprofile"));
  console.error(`\n${options.profile}'s CPU profile: summarise one scenario's load with`);
  for (const file of files) {
    for (const w of measurer.windows) {
      console.error(`  node bench/profile-summary.ts ${join(profileDir, file)} 40 ${w.fromUs} ${w.toUs}   # ${w.id}`);
    }
  }
}

/** What the run was: the commit, the machine and the settings, for the top of the section. */
function reportHeader(o: BenchOptions, generator: HttpGenerator): Report["header"] {
  const git = (...args: string[]) => execFileSync("git", args, { cwd: REPO_ROOT }).toString().trim();
  return {
    commit: git("rev-parse", "--short", "HEAD"),
    dirty: git("status", "--porcelain") !== "",
    machine: `${cpus().length} × ${cpus()[0]?.model ?? "?"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
    started: new Date().toISOString(),
    settings:
      `${o.quick ? "**Quick run** (`--quick`): " : ""}${o.connections} connections unless stated, ${o.warmupS} s of warm-up and ${o.durationS} s measured per scenario, ` +
      `${o.users} shoppers; HTTP load from ${generator.name}${generator.name === "wrk" ? ` (${o.threads} thread)` : ""}; the load generator, the store, PostgreSQL (fsync on) and Kafka (acks=all) share the machine. ` +
      `"not ours" is the machine's CPU used by processes outside this run (other work on a shared machine); rows where it passed 15 % are marked ⚠ as noisy.`,
  };
}
