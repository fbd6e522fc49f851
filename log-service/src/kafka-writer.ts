import { join } from "node:path";
import type { Logger } from "@merch/kit";
import type { Counters } from "./counters.ts";
import type { OutRecord } from "./events.ts";
import { KafkaLink, type KafkaLinkOptions } from "./kafka-link.ts";
import { BATCH_MAX_BYTES, BATCH_MAX_RECORDS, type SinkStatus, type Writer } from "./sink.ts";
import { Spool } from "./spool.ts";

export interface KafkaWriterOptions extends KafkaLinkOptions {
  dataDir: string;
  spoolMaxBytes: number;
  counters: Counters;
}

/** When idle, how often Kafka is probed, so that health and the gauge follow an outage. */
const PROBE_INTERVAL_MS = 2000;
const REPLAY_BACKOFF_MIN_MS = 200;
const REPLAY_BACKOFF_MAX_MS = 2000;
/** On shutdown, how long the spool may still be replayed while Kafka is up. */
const CLOSE_REPLAY_MS = 5000;

/**
 * Publishes records to Kafka; while Kafka is unreachable they go to the disk spool instead, and
 * the spool is replayed in order once Kafka answers again.
 *
 * Order: the sink's BatchQueue hands over one batch at a time. While the spool holds anything,
 * new batches are appended behind it rather than sent, and only the replayer sends (oldest
 * first). So records reach Kafka in the order they were accepted, also across a restart of
 * log-service, whose spool is replayed before any newer record is sent. A batch that failed may
 * still have partly reached Kafka and is replayed whole: delivery is at-least-once, and a
 * record's first copy on Kafka is always in order. Consumers drop duplicates by `id`.
 */
export class KafkaWriter implements Writer {
  readonly #opts: KafkaWriterOptions;
  readonly #spool: Spool;
  readonly #link: KafkaLink;
  readonly #log: Logger;
  #connected = false;
  #lastOkAt = 0;
  #closing = false;
  #closeDeadline = 0;
  #wakeReplay: (() => void) | undefined;
  #replaying: Promise<void> = Promise.resolve();
  #probeTimer: NodeJS.Timeout | undefined;
  #probing = false;
  #listeners: (() => void)[] = [];

  private constructor(opts: KafkaWriterOptions, spool: Spool) {
    this.#opts = opts;
    this.#spool = spool;
    this.#log = opts.logger;
    this.#link = new KafkaLink(opts);
  }

  /** Opens the spool and starts; Kafka being down at start-up is not an error (events are spooled). */
  static async start(opts: KafkaWriterOptions): Promise<KafkaWriter> {
    const spool = await Spool.open(join(opts.dataDir, "spool"), opts.spoolMaxBytes);
    const writer = new KafkaWriter(opts, spool);
    if (!spool.empty) {
      opts.logger.info({ events: spool.events, bytes: spool.bytes }, "spool holds events from an earlier run");
    }
    await writer.#probe();
    writer.#replaying = writer.#replay();
    writer.#probeTimer = setInterval(() => void writer.#probeIfIdle(), PROBE_INTERVAL_MS);
    return writer;
  }

  /** Sends the batch, or spools it while Kafka is down or the spool still holds older records. */
  async write(records: readonly OutRecord[]): Promise<number> {
    const { counters } = this.#opts;
    if (this.#spool.empty && this.#connected) {
      try {
        await this.#link.send(records);
        counters.published += records.length;
        this.#up();
        return records.length;
      } catch (err) {
        this.#down(err);
      }
    }
    try {
      const n = await this.#spool.append(records);
      counters.spooled += n;
      if (n < records.length) {
        this.#log.warn({ dropped: records.length - n, spoolBytes: this.#spool.bytes }, "spool full, events dropped");
      }
      this.#changed();
      this.#wakeReplay?.();
      return n;
    } catch (err) {
      this.#log.error({ err }, "spool write failed, events dropped");
      return 0;
    }
  }

  status(): SinkStatus {
    return {
      sink: "kafka",
      connected: this.#connected,
      accepting: this.#connected || !this.#spool.full,
      spool: { bytes: this.#spool.bytes, events: this.#spool.events, max_bytes: this.#spool.maxBytes },
    };
  }

  onChange(listener: () => void): void {
    this.#listeners.push(listener);
  }

  #changed(): void {
    for (const listener of this.#listeners) listener();
  }

  /** Replays what it can while Kafka answers (for up to CLOSE_REPLAY_MS); the rest stays spooled. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#closeDeadline = Date.now() + CLOSE_REPLAY_MS;
    clearInterval(this.#probeTimer);
    this.#wakeReplay?.();
    await this.#replaying;
    await this.#link.close();
    await this.#spool.close();
    if (!this.#spool.empty) {
      this.#log.warn({ events: this.#spool.events }, "spool kept for the next start");
    }
  }

  /** Sends the spool's oldest records to Kafka until it is empty, retrying with backoff while Kafka is down. */
  async #replay(): Promise<void> {
    let backoff = REPLAY_BACKOFF_MIN_MS;
    for (;;) {
      if (this.#closing && (this.#spool.empty || !this.#connected || Date.now() > this.#closeDeadline)) return;
      const batch = this.#spool.empty ? undefined : await this.#spool.read(BATCH_MAX_RECORDS, BATCH_MAX_BYTES);
      if (batch === undefined) {
        if (!this.#spool.empty) this.#log.error({ events: this.#spool.events }, "spool unreadable");
        await this.#sleepUnlessClosing(this.#spool.empty ? undefined : REPLAY_BACKOFF_MAX_MS);
        continue;
      }
      try {
        if (batch.records.length > 0) await this.#link.send(batch.records);
        await this.#spool.commit(batch);
        this.#changed();
        this.#opts.counters.published += batch.records.length;
        this.#up();
        backoff = REPLAY_BACKOFF_MIN_MS;
        if (this.#spool.empty) this.#log.info("spool replayed, publishing directly again");
      } catch (err) {
        this.#down(err);
        await this.#sleepUnlessClosing(backoff);
        backoff = Math.min(backoff * 2, REPLAY_BACKOFF_MAX_MS);
      }
    }
  }

  /** Sleeps for ms (forever when undefined) or until woken: new spool records, or shutdown. */
  async #sleepUnlessClosing(ms: number | undefined): Promise<void> {
    if (this.#closing) {
      // Shutting down: replay continues only while Kafka answers; no waiting for it to come back.
      if (!this.#connected || this.#spool.empty) return;
    }
    await new Promise<void>((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(done, ms);
      this.#wakeReplay = done;
      function done() {
        clearTimeout(timer);
        resolve();
      }
    });
    this.#wakeReplay = undefined;
  }

  async #probeIfIdle(): Promise<void> {
    // While the spool holds records the replayer's sends are the probe.
    if (this.#probing || this.#closing || !this.#spool.empty) return;
    if (Date.now() - this.#lastOkAt < PROBE_INTERVAL_MS) return;
    await this.#probe();
  }

  async #probe(): Promise<void> {
    this.#probing = true;
    try {
      await this.#link.probe();
      this.#up();
    } catch (err) {
      this.#down(err);
    } finally {
      this.#probing = false;
    }
  }

  #up(): void {
    this.#lastOkAt = Date.now();
    if (!this.#connected) {
      this.#connected = true;
      this.#log.info({ brokers: this.#opts.brokers, topic: this.#opts.topic }, "Kafka reachable");
      this.#changed();
    }
  }

  #down(err: unknown): void {
    if (this.#connected) {
      this.#connected = false;
      this.#log.warn({ err: String(err) }, "Kafka unreachable, spooling events to disk");
      this.#changed();
    } else {
      this.#log.debug({ err: String(err) }, "Kafka still unreachable");
    }
  }
}
