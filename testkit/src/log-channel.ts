import { randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import type { LogRecord } from "@merch/kit";
import { silenceKafkajsTimerWarnings } from "@merch/kit";
import { type Consumer, Kafka, logLevel } from "kafkajs";

// kafkajs arms timers with negative delays; the one harmless warning that causes is filtered.
silenceKafkajsTimerWarnings();

// What reached log-channel, read back as an operator's consumer would: from Kafka, or from the
// JSON Lines file log-service writes when it runs without Kafka.

/** One record of log-channel: the JSON record log-service wrote, with its key and where it sat. */
export interface ChannelRecord {
  key: string;
  partition: number;
  offset: string;
  /** The record's JSON text, exactly as published. */
  raw: string;
  record: LogRecord;
}

export interface ChannelReader {
  /** Everything read so far, in the order it arrived. */
  readonly records: readonly ChannelRecord[];
  /** The first record (already read or still to come) that matches, within the deadline. */
  waitFor(predicate: (r: ChannelRecord) => boolean, what: string, timeoutMs?: number): Promise<ChannelRecord>;
  /** Waits until `done` holds for what was read, within the deadline. */
  waitUntil(done: (records: readonly ChannelRecord[]) => boolean, what: string, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface ReadOptions {
  topic?: string;
  /** A consumer group whose committed offsets outlive the reader; a new group by default. */
  groupId?: string;
}

/** Follows the topic from its beginning, in the background, until stopped. */
export async function followLogChannel(brokers: string, opts: ReadOptions = {}): Promise<ChannelReader> {
  const topic = opts.topic ?? "log-channel";
  const kafka = new Kafka({ clientId: "log-channel-reader", brokers: [brokers], logLevel: logLevel.NOTHING });
  const consumer: Consumer = kafka.consumer({ groupId: opts.groupId ?? `reader-${randomUUID()}` });
  const records: ChannelRecord[] = [];
  let failure: unknown;
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        const raw = message.value?.toString() ?? "null";
        records.push({
          key: message.key?.toString() ?? "",
          partition,
          offset: message.offset,
          raw,
          record: JSON.parse(raw) as LogRecord,
        });
      },
    });
  } catch (err) {
    await consumer.disconnect();
    throw err;
  }
  consumer.on(consumer.events.CRASH, (e) => {
    failure = e.payload.error;
  });

  const waitUntil = async (done: (r: readonly ChannelRecord[]) => boolean, what: string, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!done(records)) {
      if (failure !== undefined) throw new Error(`reading ${topic} failed: ${String(failure)}`);
      if (Date.now() > deadline) {
        const seen = records
          .slice(-20)
          .map((r) => r.record.event)
          .join(", ");
        throw new Error(`${what}: not on ${topic} within ${timeoutMs} ms (${records.length} records; last: ${seen})`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  return {
    records,
    async waitFor(predicate, what, timeoutMs) {
      await waitUntil((r) => r.some(predicate), what, timeoutMs);
      return records.find(predicate) as ChannelRecord;
    },
    waitUntil,
    stop: () => consumer.disconnect(),
  };
}

/** Everything on `topic` from the beginning, read until `done` holds (or the deadline fails it). */
export async function readLogChannel(
  brokers: string,
  done: (records: readonly ChannelRecord[]) => boolean,
  opts: ReadOptions & { timeoutMs?: number } = {},
): Promise<ChannelRecord[]> {
  const { timeoutMs = 90_000, ...read } = opts;
  const reader = await followLogChannel(brokers, read);
  try {
    await reader.waitUntil(done, "the records wanted", timeoutMs);
    return [...reader.records];
  } finally {
    await reader.stop();
  }
}

/** Records until every one of `ids` has been seen at least once. */
export function readIds(brokers: string, topic: string, ids: readonly string[]): Promise<ChannelRecord[]> {
  const wanted = new Set(ids);
  const seen = new Set<string>();
  let checked = 0;
  return readLogChannel(
    brokers,
    (records) => {
      for (; checked < records.length; checked++) {
        const id = (records[checked] as ChannelRecord).record.id;
        if (wanted.has(id)) seen.add(id);
      }
      return seen.size === wanted.size;
    },
    { topic },
  );
}

/** How many records the topic holds, from its partitions' offsets. */
export async function topicSize(brokers: string, topic: string): Promise<number> {
  const kafka = new Kafka({ brokers: [brokers], clientId: "log-channel-admin", logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets.reduce((n, p) => n + Number(p.high) - Number(p.low), 0);
  } finally {
    await admin.disconnect();
  }
}

/** The records of log-service's file sink (log-channel.jsonl), in file order. */
export function readLogFile(path: string): ChannelRecord[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((line) => line !== "")
    .map((raw, i) => {
      const record = JSON.parse(raw) as LogRecord;
      return { key: "", partition: 0, offset: String(i), raw, record };
    });
}
