import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { applySchema, freePort, type PostgresServer, REPO_ROOT, startPostgres } from "./postgres.ts";

// The whole store as separate processes on one machine: `npm start` runs it on embedded
// defaults, and the end-to-end tests run it on free ports and throwaway data.

export type ServiceName = "db-service" | "log-service" | "gateway";

export interface ServiceProcess {
  readonly name: ServiceName;
  readonly url: string;
  readonly child: ChildProcess;
  /** What the process printed so far (when its output is captured). */
  output(): string;
  /** Resolves with the exit code (or the signal's name) when the current process exits. */
  exited(): Promise<number | string>;
  /** SIGTERM (or the given signal), then waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the service again with the same settings. */
  start(): void;
}

export interface StackOptions {
  /** Holds the embedded PostgreSQL cluster and log-service's files. */
  dataDir: string;
  /** An external PostgreSQL; the embedded one is not started then. */
  databaseUrl?: string | undefined;
  kafkaBrokers?: string | undefined;
  jwtSecret?: string | undefined;
  ports?: Partial<Record<ServiceName, number>>;
  /** Port of the embedded PostgreSQL; a free one when unset. */
  postgresPort?: number | undefined;
  /** fsync off for the embedded cluster: for throwaway test data only. */
  fastPostgres?: boolean;
  /** "inherit" prefixes each line with the service name on this terminal; "capture" keeps it. */
  output: "inherit" | "capture";
  env?: Record<string, string>;
  /** Extra environment for one service. */
  serviceEnv?: Partial<Record<ServiceName, Record<string, string>>>;
}

export interface Stack {
  gatewayUrl: string;
  services: Record<ServiceName, ServiceProcess>;
  postgres?: PostgresServer | undefined;
  databaseUrl: string;
  /** Stops the services (gateway first) and the embedded PostgreSQL. */
  stop(): Promise<void>;
}

/**
 * V8 heap limits per service (the Dockerfile sets the same through NODE_OPTIONS). Without them
 * V8 lets a busy service's heap grow to several hundred MB of garbage before collecting; with
 * them each stays under 150 MB resident. log-service gets a larger old space: it holds batches
 * on their way to Kafka, and at 48 MB it spent a third of its time collecting. bench/results.md
 * has the measurements.
 */
export const SERVICE_NODE_FLAGS: Record<ServiceName, string[]> = {
  "db-service": ["--max-semi-space-size=2", "--max-old-space-size=48"],
  "log-service": ["--max-semi-space-size=4", "--max-old-space-size=56"],
  gateway: ["--max-semi-space-size=2", "--max-old-space-size=48"],
};

const ENTRY: Record<ServiceName, string> = {
  "db-service": "db-service/src/server.ts",
  "log-service": "log-service/src/server.ts",
  gateway: "gateway/src/server.ts",
};

/** Runs a service's real entrypoint; `port` undefined leaves PORT to `env`. */
export function runService(
  name: ServiceName,
  port: number | undefined,
  env: Record<string, string>,
  output: StackOptions["output"],
): ServiceProcess {
  let captured = "";
  let child: ChildProcess;
  let exit: Promise<number | string>;
  const start = () => {
    const args = [
      ...SERVICE_NODE_FLAGS[name],
      "--disable-warning=TimeoutNegativeWarning",
      join(REPO_ROOT, ENTRY[name]),
    ];
    child = spawn(process.execPath, args, {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env, ...(port === undefined ? {} : { PORT: String(port) }) },
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group: Ctrl-C reaches only the parent, which stops services in order.
      detached: true,
    });
    const current = child;
    exit = new Promise((resolve) => current.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown")));
    const forward = (chunk: Buffer) => {
      if (output === "capture") {
        captured += chunk.toString();
        return;
      }
      for (const line of chunk.toString().split("\n")) if (line !== "") process.stdout.write(`[${name}] ${line}\n`);
    };
    child.stdout?.on("data", forward);
    child.stderr?.on("data", forward);
  };
  start();
  // A test or start script that dies must not leave services behind.
  process.once("exit", () => child.kill("SIGKILL"));
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    get child() {
      return child;
    },
    output: () => captured,
    exited: () => exit,
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exit;
    },
    start,
  };
}

export async function startStack(opts: StackOptions): Promise<Stack> {
  let postgres: PostgresServer | undefined;
  let databaseUrl = opts.databaseUrl;
  if (databaseUrl === undefined) {
    postgres = await startPostgres({
      dataDir: join(opts.dataDir, "pg"),
      fast: opts.fastPostgres ?? false,
      ...(opts.postgresPort === undefined ? {} : { port: opts.postgresPort }),
    });
    databaseUrl = postgres.url;
  } else {
    await applySchema(databaseUrl);
  }
  const port = async (name: ServiceName) => opts.ports?.[name] ?? (await freePort());
  const [dbPort, logPort, gatewayPort] = [await port("db-service"), await port("log-service"), await port("gateway")];
  const common = { LOG_LEVEL: "info", ...opts.env };
  const env = (name: ServiceName, own: Record<string, string>) => ({ ...common, ...own, ...opts.serviceEnv?.[name] });

  const db = runService("db-service", dbPort, env("db-service", { DATABASE_URL: databaseUrl }), opts.output);
  const log = runService(
    "log-service",
    logPort,
    env("log-service", {
      DATA_DIR: opts.dataDir,
      ...(opts.kafkaBrokers ? { KAFKA_BROKERS: opts.kafkaBrokers } : {}),
    }),
    opts.output,
  );
  const gateway = runService(
    "gateway",
    gatewayPort,
    env("gateway", {
      DB_SERVICE_URL: db.url,
      LOG_SERVICE_URL: log.url,
      // Without one, the gateway makes a random secret and says so loudly (development only).
      ...(opts.jwtSecret ? { JWT_SECRET: opts.jwtSecret } : {}),
    }),
    opts.output,
  );
  const services = { "db-service": db, "log-service": log, gateway };
  const stack: Stack = {
    gatewayUrl: gateway.url,
    services,
    postgres,
    databaseUrl,
    async stop() {
      await gateway.stop();
      await Promise.all([log.stop(), db.stop()]);
      await postgres?.stop();
    },
  };
  try {
    await waitUntilReady(stack);
  } catch (err) {
    await stack.stop();
    throw err;
  }
  return stack;
}

/** Polls the gateway's /readyz until db-service and log-service both answer. */
export async function waitUntilReady(stack: Stack, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    for (const s of Object.values(stack.services)) {
      if (s.child.exitCode !== null) {
        throw new Error(`${s.name} exited with code ${s.child.exitCode} during start-up:\n${s.output()}`);
      }
    }
    try {
      const res = await fetch(`${stack.gatewayUrl}/readyz`, { signal: AbortSignal.timeout(2000) });
      last = `${res.status} ${await res.text()}`;
      if (res.ok) return;
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const outputs = Object.values(stack.services)
    .map((s) => `--- ${s.name}\n${s.output()}`)
    .join("\n");
  throw new Error(`the store was not ready within ${timeoutMs} ms (last /readyz: ${last})\n${outputs}`);
}
