import { endSpan, isExporting, type Link, linkToIds, SpanKind, startBatchSpan } from "@merch/kit";
import { BatchQueue, type Cursor } from "./batch-queue.ts";
import type { Counters } from "./counters.ts";
import type { OutRecord } from "./events.ts";

/** What /status, /metrics and health report of where records go. */
export interface SinkStatus {
  sink: "kafka" | "file";
  /** Kafka answers (always true for the file sink). */
  connected: boolean;
  /** New events can be made durable now: Kafka is up, or the spool has room. */
  accepting: boolean;
  spool: { bytes: number; events: number; max_bytes: number };
}

/**
 * Makes batches durable: Kafka with the disk spool behind it (kafka-writer.ts), or a JSON Lines
 * file (file-writer.ts). Called with one batch at a time, by the sink's queue.
 */
export interface Writer {
  /** Makes the records durable in order. Resolves with how many leading records are; never rejects. */
  write(records: readonly OutRecord[]): Promise<number>;
  status(): SinkStatus;
  /** Called whenever status() may have changed (Kafka came or went, the spool filled or freed space). */
  onChange(listener: () => void): void;
  /** Called once nothing more will be written: releases connections and files. */
  close(): Promise<void>;
}

/**
 * Records and bytes of record values per write. Even when every record of a batch lands on one
 * partition, values plus per-record overhead stay below Kafka's default 1 MiB message.max.bytes.
 */
export const BATCH_MAX_RECORDS = 5000;
export const BATCH_MAX_BYTES = 512 * 1024;
const LINGER_MS = 2;

/** Where accepted records go: every client's records through one BatchQueue into one Writer. */
export class Sink {
  readonly #queue: BatchQueue;
  readonly #writer: Writer;

  constructor(writer: Writer, counters: Counters) {
    this.#writer = writer;
    this.#queue = new BatchQueue({
      maxRecords: BATCH_MAX_RECORDS,
      maxBytes: BATCH_MAX_BYTES,
      lingerMs: LINGER_MS,
      counters,
      flush: (records) => (isExporting() ? publishTraced(writer, records) : writer.write(records)),
    });
  }

  /**
   * Makes the records durable in order. Resolves with how many leading records are; the rest
   * were dropped (and the cursor stopped). Never rejects.
   */
  submit(records: readonly OutRecord[], cursor: Cursor): Promise<number> {
    return this.#queue.submit(records, cursor);
  }

  status(): SinkStatus {
    return this.#writer.status();
  }

  /** Called whenever status() may have changed. */
  onChange(listener: () => void): void {
    this.#writer.onChange(listener);
  }

  /** Makes everything submitted durable, then releases connections and files. */
  async close(): Promise<void> {
    await this.#queue.close();
    await this.#writer.close();
  }
}

/**
 * Writes one batch in a span of its own, linked to the span of each traced event's request: one
 * span per batch however many events it carries (none when it carries no traced event). It ends
 * when the batch is durable (Kafka acknowledged it, or the spool or the file holds it).
 */
async function publishTraced(writer: Writer, records: readonly OutRecord[]): Promise<number> {
  // One link per request span: a request's events (two for an order) share it.
  const links: Link[] = [];
  const seen = new Set<string>();
  for (const r of records) {
    if (r.traceId === undefined || r.spanId === undefined || seen.has(r.spanId)) continue;
    seen.add(r.spanId);
    const link = linkToIds(r.traceId, r.spanId);
    if (link) links.push(link);
  }
  if (links.length === 0) return writer.write(records);
  const span = startBatchSpan(
    "log publish",
    links,
    {
      ...(writer.status().sink === "kafka" ? { "messaging.system": "kafka" } : {}),
      "messaging.operation.type": "send",
      "messaging.batch.message_count": records.length,
    },
    SpanKind.PRODUCER,
  );
  const durable = await writer.write(records);
  if (span) endSpan(span, durable < records.length ? `${records.length - durable} not stored` : undefined);
  return durable;
}
