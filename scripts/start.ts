// `npm start`: the whole store on this machine, on embedded defaults.
//   PostgreSQL 17 (embedded, data in $DATA_DIR/pg) unless DATABASE_URL is set,
//   db-service :50051, log-service :50052 (file sink unless KAFKA_BROKERS is set), gateway :8080.
import { rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { startStack } from "@merch/devstack/stack";
import { readConfig } from "@merch/kit/config";

const env = readConfig((e) => ({
  dataDir: resolve(e.string("DATA_DIR", ".data")),
  databaseUrl: e.optional("DATABASE_URL"),
  kafkaBrokers: e.optional("KAFKA_BROKERS"),
  jwtSecret: e.optional("JWT_SECRET"),
  gatewayPort: e.int("GATEWAY_PORT", 8080, 1, 65535),
  dbPort: e.int("DB_SERVICE_PORT", 50051, 1, 65535),
  logPort: e.int("LOG_SERVICE_PORT", 50052, 1, 65535),
  pgPort: e.int("PG_PORT", 54329, 1, 65535),
}));

console.log(`Starting the SUSTech Merch Store (data in ${env.dataDir})...`);
const stack = await startStack({
  dataDir: env.dataDir,
  databaseUrl: env.databaseUrl,
  kafkaBrokers: env.kafkaBrokers,
  jwtSecret: env.jwtSecret,
  ports: { gateway: env.gatewayPort, "db-service": env.dbPort, "log-service": env.logPort },
  postgresPort: env.pgPort,
  output: "inherit",
});

// Where the running store is, for the operator tools (npm run db:psql, db:reset, logs).
const stateFile = join(env.dataDir, "store.json");
writeFileSync(
  stateFile,
  `${JSON.stringify(
    {
      gatewayUrl: stack.gatewayUrl,
      dbServiceUrl: stack.services["db-service"].url,
      logServiceUrl: stack.services["log-service"].url,
      databaseUrl: stack.databaseUrl,
      kafkaBrokers: env.kafkaBrokers ?? null,
      pid: process.pid,
    },
    null,
    2,
  )}\n`,
);

console.log(`
  The SUSTech Merch Store is ready.

  REST API        ${stack.gatewayUrl}          (try: curl ${stack.gatewayUrl}/products)
  API reference   ${stack.gatewayUrl}/docs
  Storefront      ${stack.gatewayUrl}/shop/
  db-service      ${stack.services["db-service"].url}     (gRPC, gRPC-Web, Connect)
  log-service     ${stack.services["log-service"].url}     (${env.kafkaBrokers ? `Kafka ${env.kafkaBrokers}` : `file ${resolve(env.dataDir, "log-channel.jsonl")}`})
  PostgreSQL      ${stack.postgres ? `${stack.databaseUrl} (embedded, data in ${stack.postgres.dataDir})` : "external (DATABASE_URL)"}

  Ctrl-C stops everything.
`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  console.log("Stopping...");
  await stack.stop();
  rmSync(stateFile, { force: true });
  console.log("Stopped.");
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
for (const service of Object.values(stack.services)) {
  service.exited().then((code) => {
    if (!stopping) {
      console.error(`${service.name} exited unexpectedly (${code}); stopping the store.`);
      void stop();
    }
  });
}
