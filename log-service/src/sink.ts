import type { Cursor } from "./batch-queue.ts";
import type { OutRecord } from "./events.ts";
import type { SinkStatus } from "./metrics.ts";

/** Where accepted records go: Kafka (with the disk spool behind it) or a JSON Lines file. */
export interface Sink {
  /**
   * Makes the records durable in order. Resolves with how many leading records are; the rest
   * were dropped (and the cursor stopped). Never rejects.
   */
  submit(records: readonly OutRecord[], cursor: Cursor): Promise<number>;
  status(): SinkStatus;
  /** Called whenever status() may have changed (Kafka came or went, the spool filled or freed space). */
  onChange(listener: () => void): void;
  /** Makes everything submitted durable, then releases connections and files. */
  close(): Promise<void>;
}

/**
 * Records and bytes of record values per write. Even when every record of a batch lands on one
 * partition, values plus per-record overhead stay below Kafka's default 1 MiB message.max.bytes.
 */
export const BATCH_MAX_RECORDS = 5000;
export const BATCH_MAX_BYTES = 512 * 1024;
export const LINGER_MS = 2;
