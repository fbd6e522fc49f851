import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { migrate } from "@merch/db-service";
import {
  freePort,
  type OutputMode,
  type PostgresServer,
  runService,
  type ServiceName,
  type ServiceProcess,
  startPostgres,
} from "@merch/testkit";

// The whole store as separate processes on one machine: `npm start` runs it on embedded
// defaults, and the end-to-end tests run it on free ports and throwaway data.

export interface StackOptions {
  /** Holds the embedded PostgreSQL cluster and log-service's files. */
  dataDir: string;
  /** This data directory's identity, for a cluster that must live outside it (testkit's startPostgres). */
  identity?: { id: string; adopt: boolean } | undefined;
  /** An external PostgreSQL; the embedded one is not started then. */
  databaseUrl?: string | undefined;
  kafkaBrokers?: string | undefined;
  jwtSecret?: string | undefined;
  /** The store's service credential; a random one when unset. */
  serviceCredential?: string | undefined;
  ports?: Partial<Record<ServiceName, number>>;
  /** Each service's metrics port (on loopback); a free one when unset. */
  metricsPorts?: Partial<Record<ServiceName, number>>;
  /** Port of the embedded PostgreSQL; a free one when unset. */
  postgresPort?: number | undefined;
  /** fsync off for the embedded cluster: for throwaway test data only. */
  fastPostgres?: boolean;
  /** Where the services' output goes (services.ts). */
  output: OutputMode;
  env?: Record<string, string>;
  /** Extra environment for one service. */
  serviceEnv?: Partial<Record<ServiceName, Record<string, string>>>;
}

export interface Stack {
  gatewayUrl: string;
  /** Each service's /metrics, on its metrics port (never its public or RPC port). */
  metricsUrls: Record<ServiceName, string>;
  services: Record<ServiceName, ServiceProcess>;
  postgres?: PostgresServer | undefined;
  databaseUrl: string;
  /** What the services share to trust each other (SERVICE_CREDENTIAL). */
  serviceCredential: string;
  /** Stops the services (gateway first) and the embedded PostgreSQL. */
  stop(): Promise<void>;
}

export async function startStack(opts: StackOptions): Promise<Stack> {
  let postgres: PostgresServer | undefined;
  let databaseUrl = opts.databaseUrl;
  if (databaseUrl === undefined) {
    postgres = await startPostgres({
      dataDir: join(opts.dataDir, "pg"),
      fast: opts.fastPostgres ?? false,
      migrate,
      ...(opts.identity === undefined ? {} : { identity: opts.identity }),
      ...(opts.postgresPort === undefined ? {} : { port: opts.postgresPort }),
    });
    databaseUrl = postgres.url;
  } else {
    await migrate(databaseUrl);
  }
  const port = async (name: ServiceName) => opts.ports?.[name] ?? (await freePort());
  const [dbPort, logPort, gatewayPort] = [await port("db-service"), await port("log-service"), await port("gateway")];
  const serviceCredential = opts.serviceCredential ?? randomBytes(32).toString("hex");
  const common = { LOG_LEVEL: "info", SERVICE_CREDENTIAL: serviceCredential, ...opts.env };
  const metricsPorts = {
    "db-service": opts.metricsPorts?.["db-service"] ?? (await freePort()),
    "log-service": opts.metricsPorts?.["log-service"] ?? (await freePort()),
    gateway: opts.metricsPorts?.gateway ?? (await freePort()),
  };
  const env = (name: ServiceName, own: Record<string, string>) => ({
    ...common,
    METRICS_PORT: String(metricsPorts[name]),
    ...own,
    ...opts.serviceEnv?.[name],
  });

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
    metricsUrls: {
      "db-service": `http://127.0.0.1:${metricsPorts["db-service"]}/metrics`,
      "log-service": `http://127.0.0.1:${metricsPorts["log-service"]}/metrics`,
      gateway: `http://127.0.0.1:${metricsPorts.gateway}/metrics`,
    },
    services,
    postgres,
    databaseUrl,
    serviceCredential,
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
async function waitUntilReady(stack: Stack, timeoutMs = 60_000): Promise<void> {
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
