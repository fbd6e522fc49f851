import type { Counters } from "./counters.ts";
import type { OutRecord } from "./events.ts";

/**
 * One client's place in the queue. Once one of its records could not be made durable, none of
 * its later records may be either: what a client is told it got accepted must stay a prefix of
 * what it sent, so that it can resend exactly the rest.
 */
export interface Cursor {
  stopped: boolean;
}

export interface BatchQueueOptions {
  /** Most records per flush. */
  maxRecords: number;
  /** Most bytes of record values per flush (a single larger record still goes alone). */
  maxBytes: number;
  /** How long a small batch waits for company before it is flushed. */
  lingerMs: number;
  /**
   * Makes the records durable, in order, and resolves with how many leading ones are; the rest
   * are dropped. Must not reject.
   */
  flush(records: OutRecord[]): Promise<number>;
  counters: Counters;
}

interface Submission {
  readonly records: readonly OutRecord[];
  readonly cursor: Cursor;
  readonly resolve: (durable: number) => void;
  /** Records handed to a flush so far. */
  next: number;
  durable: number;
}

interface Part {
  sub: Submission;
  count: number;
  /** Its cursor had already stopped when the batch was cut: the part is dropped unseen. */
  refused: boolean;
}

/**
 * Collects submissions from every client into batches and flushes them one batch at a time, in
 * arrival order. One flush at a time is what makes the order simple to keep: a batch that Kafka
 * refuses goes to the spool before anything after it is attempted.
 */
export class BatchQueue {
  readonly #opts: BatchQueueOptions;
  readonly #queue: Submission[] = [];
  #queuedRecords = 0;
  #closing = false;
  #wake: (() => void) | undefined;
  readonly #done: Promise<void>;

  constructor(opts: BatchQueueOptions) {
    this.#opts = opts;
    this.#done = this.#run();
  }

  /** Records not yet flushed. */
  get backlog(): number {
    return this.#queuedRecords;
  }

  /** Resolves with how many leading records were made durable; the others were dropped. */
  submit(records: readonly OutRecord[], cursor: Cursor): Promise<number> {
    if (records.length === 0) return Promise.resolve(0);
    if (this.#closing || cursor.stopped) {
      this.#opts.counters.dropped += records.length;
      cursor.stopped = true;
      return Promise.resolve(0);
    }
    return new Promise((resolve) => {
      this.#queue.push({ records, cursor, resolve, next: 0, durable: 0 });
      this.#queuedRecords += records.length;
      this.#wake?.();
    });
  }

  /** Flushes everything submitted so far, then stops. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#wake?.();
    await this.#done;
  }

  async #run(): Promise<void> {
    for (;;) {
      if (this.#queue.length === 0) {
        if (this.#closing) return;
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
        this.#wake = undefined;
        continue;
      }
      if (this.#queuedRecords < this.#opts.maxRecords && this.#opts.lingerMs > 0 && !this.#closing) {
        await new Promise((resolve) => setTimeout(resolve, this.#opts.lingerMs));
      }
      await this.#flushOne();
    }
  }

  async #flushOne(): Promise<void> {
    const { maxRecords, maxBytes, counters } = this.#opts;
    const parts: Part[] = [];
    const records: OutRecord[] = [];
    let bytes = 0;
    cut: for (const sub of this.#queue) {
      const refused = sub.cursor.stopped;
      const part: Part = { sub, count: 0, refused };
      parts.push(part);
      while (sub.next < sub.records.length) {
        const record = sub.records[sub.next] as OutRecord;
        if (records.length >= maxRecords || (records.length > 0 && bytes + record.bytes > maxBytes)) break cut;
        sub.next++;
        part.count++;
        if (!refused) {
          records.push(record);
          bytes += record.bytes;
        }
      }
    }
    this.#queuedRecords -= parts.reduce((n, p) => n + p.count, 0);

    let left = records.length === 0 ? 0 : await this.#opts.flush(records);
    for (const part of parts) {
      const durable = part.refused ? 0 : Math.min(left, part.count);
      left -= durable;
      part.sub.durable += durable;
      counters.accepted += durable;
      counters.dropped += part.count - durable;
      if (durable < part.count) part.sub.cursor.stopped = true;
    }
    while (this.#queue.length > 0) {
      const head = this.#queue[0] as Submission;
      if (head.next < head.records.length) break;
      this.#queue.shift();
      head.resolve(head.durable);
    }
  }
}
