// `npm run kafka [-- --port 9092] [-- --data-dir DIR]`: a local single-node Kafka broker until
// Ctrl-C. It prints the KAFKA_BROKERS line to give `npm start` (or `npm run logs`). Without
// --data-dir its data lives in a temporary folder that Ctrl-C (SIGINT), SIGTERM or SIGHUP removes;
// a --data-dir is the caller's and is kept, so the broker can start again on the same data.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type KafkaBroker, startKafka } from "@merch/testkit";

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    "data-dir": { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.error(
    "usage: npm run kafka -- [--port 9092] [--data-dir DIR]   (no --data-dir: a temporary one, removed on exit)",
  );
  process.exit(0);
}
const port = values.port === undefined ? undefined : Number(values.port);
if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
  console.error(`invalid --port ${values.port}`);
  process.exit(2);
}

const temporary = values["data-dir"] === undefined ? await mkdtemp(join(tmpdir(), "merch-kafka-")) : undefined;
let broker: KafkaBroker | undefined;
let stopping = false;

/** Stops the broker, removes a temporary data folder, exits. */
async function shutdown(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  try {
    await broker?.stop();
  } finally {
    if (temporary !== undefined) await rm(temporary, { recursive: true, force: true });
    process.exit(code);
  }
}
// Registered before the broker starts, so a Ctrl-C during its start-up cleans up too.
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => void shutdown(0));

try {
  broker = await startKafka({ port, dataDir: values["data-dir"] ?? temporary });
} catch (err) {
  console.error(`npm run kafka: ${(err as Error).message}`);
  await shutdown(1);
}
if (broker !== undefined && !stopping) {
  console.log(`KAFKA_BROKERS=${broker.brokers}`);
  console.error(
    `Start the store on it in another terminal: KAFKA_BROKERS=${broker.brokers} npm start\n` +
      `Data and broker.log in ${broker.dataDir}${temporary === undefined ? " (kept)" : " (removed when this stops)"}; Ctrl-C stops it.`,
  );
}
