import { type Consumer, Kafka, logLevel } from "kafkajs";
import type { LogRecord } from "../../log-service/src/events.ts";

/** A record read back from log-channel: the JSON record log-service wrote, its key and text. */
export interface ChannelRecord {
  key: string | null;
  raw: string;
  value: LogRecord;
}

/** Reads the log-channel topic from the beginning into memory, as an operator's consumer would. */
export async function readLogChannel(brokers: string, topic = "log-channel") {
  const kafka = new Kafka({ clientId: "e2e-reader", brokers: [brokers], logLevel: logLevel.NOTHING });
  const consumer: Consumer = kafka.consumer({ groupId: `e2e-${process.pid}-${Date.now()}` });
  const records: ChannelRecord[] = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const raw = message.value?.toString() ?? "";
      records.push({ key: message.key?.toString() ?? null, raw, value: JSON.parse(raw) });
    },
  });
  return {
    records,
    async waitFor(predicate: (r: ChannelRecord) => boolean, what: string, timeoutMs = 30_000): Promise<ChannelRecord> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = records.find(predicate);
        if (found) return found;
        if (Date.now() > deadline) {
          throw new Error(
            `no ${what} on ${topic} within ${timeoutMs} ms; saw ${records.map((r) => r.value.event).join(", ")}`,
          );
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    stop: () => consumer.disconnect(),
  };
}
