// npm run bench's command line, checked, and the fixed sizes of its scenarios.
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { ServiceName } from "@merch/testkit";
import { REPO_ROOT } from "@merch/testkit";
import { NODE_SERVICES } from "./report.ts";

/** Stock of the product every order scenario buys: set back before each, so none runs out. */
export const STOCK = 10_000_000;
export const FLASH_STOCK = 5000;
export const FLASH_BUYERS = 10_000;
/** The connection counts of the scaling scenarios (the one of --connections is the plain one). */
export const SCALING = [1, 8, 32, 128];

export interface BenchOptions {
  /** A smoke run: 1 s of warm-up and 2 s per scenario, fewer shoppers, no tracing. */
  quick: boolean;
  durationS: number;
  warmupS: number;
  connections: number;
  users: number;
  /** Scenario ids to run; undefined: all. */
  only: string[] | undefined;
  loadgen: "wrk" | "autocannon";
  /** What calls db-service directly: h2load, or connect-node in the bench process. */
  directClient: "h2load" | "node";
  /** wrk threads: one leaves the other core to the store. */
  threads: number;
  /** Runs the tracing scenarios (Zipkin and restarted services). */
  tracing: boolean;
  /** Runs one service with --cpu-prof; its profile is written when the bench stops it. */
  profile: ServiceName | undefined;
  /** Extra environment per service (--env service:NAME=value). */
  serviceEnv: Partial<Record<ServiceName, Record<string, string>>>;
  /** Writes each service's output to DIR/<service>.log when the bench ends. */
  logs: string | undefined;
  /** Replaces the measured section of `out`. */
  write: boolean;
  out: string;
}

export function benchOptions(argv: string[] = process.argv.slice(2)): BenchOptions {
  const { values: args } = parseArgs({
    args: argv,
    allowNegative: true,
    options: {
      quick: { type: "boolean", default: false },
      duration: { type: "string" },
      warmup: { type: "string" },
      connections: { type: "string", default: "32" },
      users: { type: "string" },
      only: { type: "string" },
      loadgen: { type: "string", default: "wrk" },
      "direct-client": { type: "string", default: "h2load" },
      threads: { type: "string", default: "1" },
      tracing: { type: "boolean" },
      profile: { type: "string" },
      env: { type: "string", multiple: true },
      logs: { type: "string" },
      write: { type: "boolean" },
      out: { type: "string", default: join(REPO_ROOT, "bench", "results.md") },
    },
  });
  const quick = args.quick;
  const durationS = Number(args.duration ?? (quick ? 2 : 10));
  const warmupS = Number(args.warmup ?? (quick ? 1 : 3));
  const connections = Number(args.connections);
  const users = Number(args.users ?? (quick ? 16 : 64));
  const only = args.only?.split(",").map((s) => s.trim());
  const profile = args.profile as ServiceName | undefined;
  for (const [name, v] of Object.entries({ duration: durationS, warmup: warmupS, connections, users })) {
    if (!Number.isFinite(v) || v < (name === "warmup" ? 0 : 1)) throw new Error(`bad --${name}: ${v}`);
  }
  if (profile !== undefined && !(NODE_SERVICES as readonly string[]).includes(profile)) {
    throw new Error(`--profile takes one of ${NODE_SERVICES.join(", ")}`);
  }
  const serviceEnv: BenchOptions["serviceEnv"] = {};
  for (const entry of args.env ?? []) {
    const m = /^(gateway|db-service|log-service):([A-Za-z_][A-Za-z0-9_]*)=(.*)$/s.exec(entry);
    if (!m) throw new Error(`--env takes service:NAME=value, got ${entry}`);
    const service = m[1] as ServiceName;
    serviceEnv[service] = { ...serviceEnv[service], [m[2] ?? ""]: m[3] ?? "" };
  }
  return {
    quick,
    durationS,
    warmupS,
    connections,
    users,
    only,
    loadgen: args.loadgen === "autocannon" ? "autocannon" : "wrk",
    directClient: args["direct-client"] === "node" ? "node" : "h2load",
    threads: Math.max(1, Number(args.threads)),
    // Tracing needs Zipkin's JVM and a restart of the services: on in full runs, off in quick ones.
    tracing: args.tracing ?? (!quick && (only === undefined || only.some((id) => id.includes("traced-")))),
    profile,
    serviceEnv,
    logs: args.logs,
    // A partial or profiled run does not replace the full table in the results file.
    write: args.write ?? (only === undefined && profile === undefined),
    out: args.out,
  };
}

/** Whether the run includes this scenario (--only). */
export function wanted(options: BenchOptions, id: string): boolean {
  return options.only === undefined || options.only.includes(id);
}
