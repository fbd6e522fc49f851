// Throughput of the log pipeline: one StreamLogs stream over gRPC h2c into log-service (a child
// process, as in production), which publishes to a real Kafka broker with acks=all. The clock
// runs from the first send until the response, which log-service sends only once every event
// is acknowledged by Kafka. Not a test:
//   node bench/log-pipeline.ts [--events 50000] [--batch 500] [--runs 3]
import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  LogEventSchema,
  LogLevel,
  type StreamLogsRequest,
  StreamLogsRequestSchema,
} from "@merch/gen/merch/log/v1/log_pb";
import { spawnLogService, tempDir } from "@merch/log-service/test-support";
import { startKafka } from "@merch/testkit";
import { Kafka, logLevel } from "kafkajs";

const { values } = parseArgs({
  options: {
    events: { type: "string", default: "50000" },
    batch: { type: "string", default: "500" },
    runs: { type: "string", default: "3" },
  },
});
const total = Number(values.events);
const batchSize = Number(values.batch);
const runs = Number(values.runs);
for (const [name, v] of [
  ["--events", total],
  ["--batch", batchSize],
  ["--runs", runs],
] as const) {
  if (!Number.isInteger(v) || v < 1) {
    console.error(`${name} must be a positive integer`);
    process.exit(2);
  }
}

/** Requests shaped like the gateway's: request events of a few hundred users. */
function requests(count: number): StreamLogsRequest[] {
  const out: StreamLogsRequest[] = [];
  const now = Date.now();
  for (let i = 0; i < count; i += batchSize) {
    const events = [];
    for (let j = i; j < Math.min(i + batchSize, count); j++) {
      events.push(
        create(LogEventSchema, {
          id: randomUUID(),
          time: timestampFromMs(now + j),
          level: LogLevel.INFO,
          service: "gateway",
          event: "http.request",
          message: "GET /api/products 200",
          ...(j % 4 === 0 ? {} : { userId: (j % 500) + 1 }),
          requestId: randomUUID(),
          http: { method: "GET", path: `/api/products/${j % 100}`, status: 200, durationMs: 3.2 },
          attributes: { route: "/api/products/:id" },
        }),
      );
    }
    out.push(create(StreamLogsRequestSchema, { events }));
  }
  return out;
}

async function* stream(list: readonly StreamLogsRequest[]): AsyncGenerator<StreamLogsRequest> {
  yield* list;
}

const broker = await startKafka();
const log = await spawnLogService({
  KAFKA_BROKERS: broker.brokers,
  DATA_DIR: tempDir("log-bench"),
});
try {
  // Warm-up: connections, JIT, the producer's first metadata.
  await log.grpc.streamLogs(stream(requests(5000)));
  const rates: number[] = [];
  for (let run = 1; run <= runs; run++) {
    const list = requests(total);
    const started = performance.now();
    const res = await log.grpc.streamLogs(stream(list));
    const seconds = (performance.now() - started) / 1000;
    if (res.accepted !== BigInt(total)) throw new Error(`accepted ${res.accepted} of ${total}`);
    rates.push(total / seconds);
    console.log(
      `run ${run}: ${total} events in ${seconds.toFixed(2)} s = ${Math.round(total / seconds)} events/s (acks=all)`,
    );
  }
  const kafka = new Kafka({ brokers: [broker.brokers], clientId: "bench", logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const offsets = await admin.fetchTopicOffsets("log-channel");
  await admin.disconnect();
  const onTopic = offsets.reduce((n, p) => n + Number(p.high), 0);
  console.log(`log-channel holds ${onTopic} records (expected ${5000 + runs * total})`);
  const sorted = [...rates].sort((a, b) => a - b);
  console.log(
    `median ${Math.round(sorted[Math.floor(sorted.length / 2)] ?? 0)} events/s over ${runs} run(s) of ${total} events in batches of ${batchSize}`,
  );
} finally {
  log.child.kill("SIGTERM");
  await log.exited;
  log.closeClients();
  await broker.stop();
}
