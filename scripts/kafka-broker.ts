// Runs a local single-node Kafka broker until Ctrl-C:
//   node scripts/kafka-broker.ts [--port 9092] [--data-dir .data/kafka]
import { parseArgs } from "node:util";
import { startKafka } from "@merch/testkit";

const { values } = parseArgs({ options: { port: { type: "string" }, "data-dir": { type: "string" } } });
const port = values.port === undefined ? undefined : Number(values.port);
if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
  console.error(`invalid --port ${values.port}`);
  process.exit(2);
}

const broker = await startKafka({ port, dataDir: values["data-dir"] });
console.log(`KAFKA_BROKERS=${broker.brokers}`);
console.error(`data and broker.log in ${broker.dataDir}`);

let stopping = false;
const shutdown = async () => {
  if (stopping) return;
  stopping = true;
  await broker.stop();
  process.exit(0);
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
