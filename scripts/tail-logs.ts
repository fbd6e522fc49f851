// Prints the store's log channel, one JSON record per line, and keeps following it (Ctrl-C stops):
//   node scripts/tail-logs.ts [--from-beginning]
// With KAFKA_BROKERS set it consumes KAFKA_TOPIC (default log-channel) from Kafka, like
// kafka-console-consumer; without, it follows DATA_DIR/log-channel.jsonl (DATA_DIR defaults to
// ./.data), where log-service writes when it has no broker. Without --from-beginning only
// records that arrive from now on are printed.
import { randomUUID } from "node:crypto";
import { open, stat } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ConfigError, silenceKafkajsTimerWarnings } from "@merch/kit";
import { CHANNEL_FILE, loadConfig } from "@merch/log-service";
import { Kafka, logLevel } from "kafkajs";

const POLL_MS = 250;
const READ_BYTES = 1024 * 1024;

silenceKafkajsTimerWarnings();
const { values } = parseArgs({
  options: { "from-beginning": { type: "boolean", default: false }, help: { type: "boolean", short: "h" } },
});
if (values.help) {
  console.error("usage: npm run logs -- [--from-beginning]   (env: KAFKA_BROKERS, KAFKA_TOPIC, DATA_DIR)");
  process.exit(0);
}
const fromBeginning = values["from-beginning"];

let config: ReturnType<typeof loadConfig>;
try {
  config = loadConfig();
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(2);
  }
  throw err;
}

// `| head` closing the pipe is a normal way to stop.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

let stopping = false;
const stops: (() => Promise<void>)[] = [];
const shutdown = () => {
  if (stopping) process.exit(1);
  stopping = true;
  void Promise.allSettled(stops.map((stop) => stop())).then(() => process.exit(0));
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);

if (config.kafkaBrokers.length > 0) {
  await tailKafka(config.kafkaBrokers, config.kafkaTopic);
} else {
  await tailFile(join(config.dataDir, CHANNEL_FILE));
}

async function tailKafka(brokers: string[], topic: string): Promise<void> {
  const kafka = new Kafka({ brokers, clientId: "tail-logs", logLevel: logLevel.ERROR });
  // A group of its own each run, like kafka-console-consumer; offsets are never committed, so
  // nothing of it outlives the run.
  const consumer = kafka.consumer({ groupId: `tail-logs-${randomUUID()}` });
  stops.push(() => consumer.disconnect());
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning });
  console.error(`tailing topic ${topic} on ${brokers.join(",")}${fromBeginning ? " from the beginning" : ""}`);
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ message }) => {
      if (message.value !== null) process.stdout.write(`${message.value.toString()}\n`);
    },
  });
}

async function tailFile(path: string): Promise<void> {
  console.error(`following ${path}${fromBeginning ? " from the beginning" : ""}`);
  let position = fromBeginning ? 0 : await sizeOf(path);
  let partial = Buffer.alloc(0);
  while (!stopping) {
    const size = await sizeOf(path);
    if (size < position) {
      // Truncated or replaced: start over at its beginning.
      position = 0;
      partial = Buffer.alloc(0);
    }
    if (size > position) {
      const fh = await open(path, "r");
      try {
        const chunk = Buffer.alloc(Math.min(size - position, READ_BYTES));
        const { bytesRead } = await fh.read(chunk, 0, chunk.length, position);
        position += bytesRead;
        const data = Buffer.concat([partial, chunk.subarray(0, bytesRead)]);
        const end = data.lastIndexOf(0x0a) + 1;
        // A line is printed only once whole: the writer may be halfway through it.
        if (end > 0) process.stdout.write(data.subarray(0, end));
        partial = data.subarray(end);
      } finally {
        await fh.close();
      }
      if (position < size) continue;
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw err;
  }
}
