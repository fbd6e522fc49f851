import { join } from "node:path";
import type { Logger } from "@merch/kit/logger";
import { Kafka, type logCreator, logLevel, Partitioners, type Producer, type RetryOptions } from "kafkajs";
import { BatchQueue, type Cursor } from "./batch-queue.ts";
import type { OutRecord } from "./events.ts";
import type { Counters, SinkStatus } from "./metrics.ts";
import { BATCH_MAX_BYTES, BATCH_MAX_RECORDS, LINGER_MS, type Sink } from "./sink.ts";
import { Spool } from "./spool.ts";

export interface KafkaSinkOptions {
  brokers: string[];
  clientId: string;
  topic: string;
  partitions: number;
  replicationFactor: number;
  dataDir: string;
  spoolMaxBytes: number;
  counters: Counters;
  logger: Logger;
}

// A few quick retries ride out a leader change; anything longer is an outage, and then the
// batch is better off in the spool than held in memory while kafkajs keeps trying.
const RETRY: RetryOptions = { retries: 3, initialRetryTime: 100, maxRetryTime: 1000 };
const CONNECT_TIMEOUT_MS = 1000;
const REQUEST_TIMEOUT_MS = 5000;
/**
 * Longest a send (or a probe) may take before it counts as failed, whatever kafkajs is doing: a
 * broker that stops answering without refusing connections must not hold events (and the
 * client's acknowledgement) for long; the spool takes them instead.
 */
const SEND_DEADLINE_MS = 8000;
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
 * Order: everything passes through one BatchQueue, one batch at a time. While the spool holds
 * anything, new batches are appended behind it rather than sent, and only the replayer sends
 * (oldest first). So records reach Kafka in the order they were accepted, also across a restart
 * of log-service, whose spool is replayed before any newer record is sent. A batch that failed
 * may still have partly reached Kafka and is replayed whole: delivery is at-least-once, and a
 * record's first copy on Kafka is always in order. Consumers drop duplicates by `id`.
 */
export class KafkaSink implements Sink {
  readonly #opts: KafkaSinkOptions;
  readonly #spool: Spool;
  readonly #link: KafkaLink;
  readonly #queue: BatchQueue;
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

  private constructor(opts: KafkaSinkOptions, spool: Spool) {
    this.#opts = opts;
    this.#spool = spool;
    this.#log = opts.logger;
    this.#link = new KafkaLink(opts);
    this.#queue = new BatchQueue({
      maxRecords: BATCH_MAX_RECORDS,
      maxBytes: BATCH_MAX_BYTES,
      lingerMs: LINGER_MS,
      counters: opts.counters,
      flush: (records) => this.#flush(records),
    });
  }

  /** Opens the spool and starts; Kafka being down at start-up is not an error (events are spooled). */
  static async start(opts: KafkaSinkOptions): Promise<KafkaSink> {
    const spool = await Spool.open(join(opts.dataDir, "spool"), opts.spoolMaxBytes);
    const sink = new KafkaSink(opts, spool);
    if (!spool.empty) {
      opts.logger.info({ events: spool.events, bytes: spool.bytes }, "spool holds events from an earlier run");
    }
    await sink.#probe();
    sink.#replaying = sink.#replay();
    sink.#probeTimer = setInterval(() => void sink.#probeIfIdle(), PROBE_INTERVAL_MS);
    return sink;
  }

  submit(records: readonly OutRecord[], cursor: Cursor): Promise<number> {
    return this.#queue.submit(records, cursor);
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

  async close(): Promise<void> {
    await this.#queue.close();
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

  async #flush(records: OutRecord[]): Promise<number> {
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

/**
 * The kafkajs client: creates the topic when missing, and replaces the producer after any failed
 * send, so that no state of a broken connection (or stale idempotence sequence numbers) carries
 * over to the next attempt.
 */
class KafkaLink {
  readonly #opts: KafkaSinkOptions;
  readonly #kafka: Kafka;
  #producer: Promise<Producer> | undefined;
  #topicReady: Promise<void> | undefined;

  constructor(opts: KafkaSinkOptions) {
    this.#opts = opts;
    this.#kafka = new Kafka({
      clientId: opts.clientId,
      brokers: opts.brokers,
      connectionTimeout: CONNECT_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      retry: RETRY,
      logLevel: logLevel.WARN,
      logCreator: pinoLogCreator(opts.logger),
    });
  }

  async send(records: readonly OutRecord[]): Promise<void> {
    const pending = this.#currentProducer();
    try {
      const producer = await pending;
      await withDeadline(
        producer.send({
          topic: this.#opts.topic,
          acks: -1,
          timeout: REQUEST_TIMEOUT_MS,
          messages: records.map((r) => ({ key: r.key, value: r.value })),
        }),
        SEND_DEADLINE_MS,
        "Kafka send",
      );
    } catch (err) {
      this.#discard(pending);
      throw err;
    }
  }

  /**
   * Resolves when Kafka answers, the topic exists and a producer is ready. Readying the producer
   * here keeps its set-up (InitProducerId waits for the broker's transaction coordinator to
   * load, a few hundred ms after a broker start) off the path of the first send.
   */
  async probe(): Promise<void> {
    const pending = this.#currentProducer();
    const admin = this.#kafka.admin({ retry: { retries: 0 } });
    try {
      await pending;
      await withDeadline(
        (async () => {
          await admin.connect();
          await admin.describeCluster();
        })(),
        SEND_DEADLINE_MS,
        "Kafka probe",
      );
    } catch (err) {
      // Its connections are as dead as the probe's; the next attempt starts afresh.
      this.#discard(pending);
      throw err;
    } finally {
      await admin.disconnect().catch(() => {});
    }
  }

  async close(): Promise<void> {
    const pending = this.#producer;
    this.#producer = undefined;
    if (pending) await disconnect(pending);
  }

  #currentProducer(): Promise<Producer> {
    this.#producer ??= (async () => {
      await this.#ensureTopic();
      const producer = this.#kafka.producer({
        createPartitioner: Partitioners.DefaultPartitioner,
        idempotent: true,
        // Idempotence keeps order only with one request in flight per connection.
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        retry: RETRY,
      });
      try {
        await withDeadline(producer.connect(), SEND_DEADLINE_MS, "Kafka connect");
      } catch (err) {
        await producer.disconnect().catch(() => {});
        throw err;
      }
      return producer;
    })();
    return this.#producer;
  }

  #discard(pending: Promise<Producer>): void {
    if (this.#producer === pending) {
      this.#producer = undefined;
      // Checked again with the next producer, in case the failure was a deleted topic.
      this.#topicReady = undefined;
    }
    void disconnect(pending);
  }

  #ensureTopic(): Promise<void> {
    this.#topicReady ??= (async () => {
      const { topic, partitions, replicationFactor, logger } = this.#opts;
      const admin = this.#kafka.admin({ retry: { retries: 1 } });
      try {
        const created = await withDeadline(
          (async () => {
            await admin.connect();
            return admin.createTopics({
              topics: [{ topic, numPartitions: partitions, replicationFactor }],
              waitForLeaders: true,
            });
          })(),
          SEND_DEADLINE_MS,
          "Kafka topic creation",
        );
        if (created) logger.info({ topic, partitions, replicationFactor }, "created topic");
      } finally {
        await admin.disconnect().catch(() => {});
      }
    })();
    const ready = this.#topicReady;
    ready.catch(() => {
      if (this.#topicReady === ready) this.#topicReady = undefined;
    });
    return ready;
  }
}

async function disconnect(pending: Promise<Producer>): Promise<void> {
  try {
    await (await pending).disconnect();
  } catch {
    // A producer that never connected, or a broker that is gone: nothing left to release.
  }
}

function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

/** kafkajs logs every retry of an outage; they go to debug, and log-service reports the outage itself. */
function pinoLogCreator(logger: Logger): logCreator {
  return () =>
    ({ namespace, log }) => {
      const { message, timestamp: _timestamp, ...extra } = log;
      logger.debug({ kafkajs: namespace, ...extra }, message);
    };
}
