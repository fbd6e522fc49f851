// Which transport should the gateway use to call db-service? Measures the three candidates
// against one real db-service process on a real PostgreSQL, in one run, on this machine.
//   node bench/transports.ts [calls=20000] [concurrency=32]
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { migrate } from "@merch/db-service";
import { DB_TRANSPORTS, dbClients, loadConfig, networkDownstream } from "@merch/gateway";
import { freePort, runService, startPostgres } from "@merch/testkit";

const calls = Number(process.argv[2] ?? 20_000);
const concurrency = Number(process.argv[3] ?? 32);
const dir = mkdtempSync(join(tmpdir(), "merch-bench-"));
chmodSync(dir, 0o755);
const pg = await startPostgres({ dataDir: join(dir, "pg"), fast: true, migrate });
const port = await freePort();
const db = runService("db-service", port, { DATABASE_URL: pg.url, LOG_LEVEL: "warn" }, "capture");
await new Promise((r) => setTimeout(r, 2000));

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

async function measure(kind: (typeof DB_TRANSPORTS)[number], n: number) {
  const downstream = networkDownstream(loadConfig({ DB_SERVICE_URL: db.url, DB_TRANSPORT: kind }));
  const clients = dbClients(downstream.db);
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        next++;
        const t = performance.now();
        await clients.products.getProduct({ id: 1 + (next % 3) });
        latencies.push(performance.now() - t);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  downstream.close();
  latencies.sort((a, b) => a - b);
  return { rps: n / seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

const results: Record<string, { rps: number; p50: number; p99: number }> = {};
for (const kind of DB_TRANSPORTS) await measure(kind, 2000); // warm up the JIT and the pool
for (const round of [1, 2]) {
  for (const kind of DB_TRANSPORTS) {
    const r = await measure(kind, calls);
    const best = results[kind];
    if (!best || r.rps > best.rps) results[kind] = r;
    console.error(`round ${round} ${kind}: ${r.rps.toFixed(0)} calls/s`);
  }
}
const top = Math.max(...Object.values(results).map((r) => r.rps));
console.log(`\nGetProduct, ${calls} calls, ${concurrency} concurrent, best of 2 rounds:\n`);
console.log("| transport | calls/s | vs best | p50 ms | p99 ms |");
console.log("|---|---:|---:|---:|---:|");
for (const [kind, r] of Object.entries(results)) {
  console.log(
    `| ${kind} | ${r.rps.toFixed(0)} | ${((100 * r.rps) / top).toFixed(0)} % | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} |`,
  );
}
await db.stop();
await pg.stop();
rmSync(dir, { recursive: true, force: true });
