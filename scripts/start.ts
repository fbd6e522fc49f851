// `npm start`: the whole store on this machine, on embedded defaults, supervised.
//   PostgreSQL 17 (embedded, data in $DATA_DIR/pg, or under /var/lib/merch-store when root's
//   DATA_DIR is private: see identity()) unless DATABASE_URL is set, db-service :50051
//   and log-service :50052 on loopback only (file sink unless KAFKA_BROKERS is set), gateway :8080.
// A process that dies is started again with a growing, capped delay, for as long as npm start
// runs: one service that keeps failing is reported loudly, never a reason to stop the others
// (devstack/src/supervisor.ts).
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { startStack, superviseStack } from "@merch/devstack";
import { readConfig } from "@merch/kit";

const env = readConfig((e) => ({
  dataDir: resolve(e.string("DATA_DIR", ".data")),
  databaseUrl: e.optional("DATABASE_URL"),
  kafkaBrokers: e.optional("KAFKA_BROKERS"),
  jwtSecret: e.optional("JWT_SECRET"),
  serviceCredential: e.optional("SERVICE_CREDENTIAL"),
  gatewayPort: e.int("GATEWAY_PORT", 8080, 1, 65535),
  dbPort: e.int("DB_SERVICE_PORT", 50051, 1, 65535),
  logPort: e.int("LOG_SERVICE_PORT", 50052, 1, 65535),
  pgPort: e.int("PG_PORT", 54329, 1, 65535),
  // /metrics is served on loopback ports of its own; free ones unless named.
  gatewayMetricsPort: e.int("GATEWAY_METRICS_PORT", 0, 0, 65535),
  dbMetricsPort: e.int("DB_SERVICE_METRICS_PORT", 0, 0, 65535),
  logMetricsPort: e.int("LOG_SERVICE_METRICS_PORT", 0, 0, 65535),
  // Readable lines for a person at a terminal; the services' JSON for anything else.
  logFormat: e.oneOf("LOG_FORMAT", process.stdout.isTTY ? "pretty" : "json", ["pretty", "json"]),
}));

/**
 * A secret kept in the data directory, readable by its owner only from its first byte, made on
 * first use. Written aside and renamed into place, so a start killed at any moment leaves the
 * whole secret or none (a short one left by an older version is made again).
 */
function keptSecret(name: string, given: string | undefined): string {
  if (given !== undefined) return given;
  const file = join(env.dataDir, name);
  const kept = existsSync(file) ? readFileSync(file, "utf8").trim() : "";
  if (kept.length >= 32) return kept;
  const secret = randomBytes(32).toString("hex");
  const aside = `${file}.tmp-${process.pid}`;
  writeFileSync(aside, `${secret}\n`, { mode: 0o600 });
  renameSync(aside, file);
  return secret;
}

/**
 * This data directory's identity: a random id made at its first start. A cluster that has to live
 * outside DATA_DIR (testkit's startPostgres, under root with a private home) records it, and one
 * found there recording another id belonged to a DATA_DIR since removed: it is wiped, so removing
 * DATA_DIR removes the store's data. A DATA_DIR from before identities (its secrets are there) keeps
 * the cluster it had.
 */
function identity(): { id: string; adopt: boolean } {
  const file = join(env.dataDir, "store-id");
  const older = !existsSync(file) && existsSync(join(env.dataDir, "jwt-secret"));
  return { id: keptSecret("store-id", undefined), adopt: older };
}

// Ctrl-C or a kill while the store is still starting: exit now. The exit hooks kill an initdb
// under way and stop a PostgreSQL already started (testkit), so that nothing of this start goes on
// behind it while the next start repairs the data directory.
const quitWhileStarting = () => process.exit(130);
process.on("SIGINT", quitWhileStarting);
process.on("SIGTERM", quitWhileStarting);

console.log(`Starting the SUSTech Merch Store (data in ${env.dataDir})...`);
mkdirSync(env.dataDir, { recursive: true, mode: 0o700 });
const credentialFile = join(env.dataDir, "service-credential");
const storeIdentity = identity();
const stack = await startStack({
  dataDir: env.dataDir,
  identity: storeIdentity,
  databaseUrl: env.databaseUrl,
  kafkaBrokers: env.kafkaBrokers,
  // Kept, so that tokens survive a restart of the store.
  jwtSecret: keptSecret("jwt-secret", env.jwtSecret),
  serviceCredential: keptSecret("service-credential", env.serviceCredential),
  ports: { gateway: env.gatewayPort, "db-service": env.dbPort, "log-service": env.logPort },
  metricsPorts: {
    ...(env.gatewayMetricsPort === 0 ? {} : { gateway: env.gatewayMetricsPort }),
    ...(env.dbMetricsPort === 0 ? {} : { "db-service": env.dbMetricsPort }),
    ...(env.logMetricsPort === 0 ? {} : { "log-service": env.logMetricsPort }),
  },
  postgresPort: env.pgPort,
  output: env.logFormat,
});

// Where the running store is, for the operator tools (npm run db:psql, db:reset, logs). It holds
// the database's password: its owner alone may read it.
const stateFile = join(env.dataDir, "store.json");
// Written aside and renamed into place, so a reader (the operator tools, the tests) never sees a
// half-written file.
const writeState = (restarts: Readonly<Record<string, number>>) => {
  writeFileSync(
    `${stateFile}.tmp`,
    `${JSON.stringify(
      {
        gatewayUrl: stack.gatewayUrl,
        dbServiceUrl: stack.services["db-service"].url,
        logServiceUrl: stack.services["log-service"].url,
        metricsUrls: stack.metricsUrls,
        databaseUrl: stack.databaseUrl,
        serviceCredentialFile: env.serviceCredential === undefined ? credentialFile : null,
        kafkaBrokers: env.kafkaBrokers ?? null,
        pid: process.pid,
        restarts,
      },
      null,
      2,
    )}\n`,
    { mode: 0o600 },
  );
  renameSync(`${stateFile}.tmp`, stateFile);
};
writeState({});

/** Why the database is outside DATA_DIR, when it is, and what removes it. */
function relocatedNote(): string {
  const relocated = stack.postgres?.relocated;
  if (!stack.postgres || !relocated) return "";
  return `
                  Outside DATA_DIR: ${relocated.reason}.
                  It is this DATA_DIR's (store-id): once ${env.dataDir} is removed, the next npm start
                  wipes it and starts afresh; rm -rf ${dirname(stack.postgres.dataDir)} frees the disk now.${
                    relocated.staleRemoved
                      ? `
                  A cluster left there by a removed DATA_DIR was wiped at this start.`
                      : ""
                  }`;
}

process.off("SIGINT", quitWhileStarting);
process.off("SIGTERM", quitWhileStarting);
console.log(`
  The SUSTech Merch Store is ready.

  REST API        ${stack.gatewayUrl}          (try: curl ${stack.gatewayUrl}/products)
  Storefront      ${stack.gatewayUrl}/shop/
  API reference   ${stack.gatewayUrl}/docs
  db-service      ${stack.services["db-service"].url}     (gRPC, gRPC-Web, Connect; loopback only)
  log-service     ${stack.services["log-service"].url}     (${env.kafkaBrokers ? `Kafka ${env.kafkaBrokers}` : `file ${resolve(env.dataDir, "log-channel.jsonl")}`})
  PostgreSQL      ${stack.postgres ? `127.0.0.1:${stack.postgres.port} (embedded, data in ${stack.postgres.dataDir})` : "external (DATABASE_URL)"}${relocatedNote()}
  Metrics         ${Object.values(stack.metricsUrls).join("  ")}  (loopback only)
  Service credential for buf curl / grpcurl: ${env.serviceCredential === undefined ? credentialFile : "SERVICE_CREDENTIAL"}

  Ctrl-C stops everything.
`);

let stopping = false;
const stop = async (code: number) => {
  if (stopping) return;
  stopping = true;
  supervisor.stop();
  console.log("Stopping...");
  await stack.stop();
  rmSync(stateFile, { force: true });
  console.log("Stopped.");
  process.exit(code);
};

const supervisor = superviseStack(stack, {
  log: (message) => console.error(`[npm start] ${message}`),
  onRestart: writeState,
});

process.on("SIGINT", () => void stop(0));
process.on("SIGTERM", () => void stop(0));
