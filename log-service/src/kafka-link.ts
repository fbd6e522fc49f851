import { type Logger, raceAbort } from "@merch/kit";
import { Kafka, type logCreator, logLevel, Partitioners, type Producer, type RetryOptions } from "kafkajs";
import type { OutRecord } from "./events.ts";

export interface KafkaLinkOptions {
  brokers: string[];
  clientId: string;
  topic: string;
  partitions: number;
  replicationFactor: number;
  logger: Logger;
  /** Told of every send: how long it took, and whether it failed (for the metrics). */
  onSend?: (seconds: number, failed: boolean) => void;
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

/**
 * The kafkajs client: creates the topic when missing, and replaces the producer after any failed
 * send, so that no state of a broken connection (or stale idempotence sequence numbers) carries
 * over to the next attempt.
 */
export class KafkaLink {
  readonly #opts: KafkaLinkOptions;
  readonly #kafka: Kafka;
  #producer: Promise<Producer> | undefined;
  #topicReady: Promise<void> | undefined;

  constructor(opts: KafkaLinkOptions) {
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
    const started = performance.now();
    try {
      const producer = await pending;
      await raceAbort(
        producer.send({
          topic: this.#opts.topic,
          acks: -1,
          timeout: REQUEST_TIMEOUT_MS,
          messages: records.map((r) => ({ key: r.key, value: r.value })),
        }),
        SEND_DEADLINE_MS,
        () => tookTooLong("Kafka send"),
      );
      this.#opts.onSend?.((performance.now() - started) / 1000, false);
    } catch (err) {
      this.#opts.onSend?.((performance.now() - started) / 1000, true);
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
      await raceAbort(
        (async () => {
          await admin.connect();
          await admin.describeCluster();
        })(),
        SEND_DEADLINE_MS,
        () => tookTooLong("Kafka probe"),
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
        await raceAbort(producer.connect(), SEND_DEADLINE_MS, () => tookTooLong("Kafka connect"));
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
        const created = await raceAbort(
          (async () => {
            await admin.connect();
            return admin.createTopics({
              topics: [{ topic, numPartitions: partitions, replicationFactor }],
              waitForLeaders: true,
            });
          })(),
          SEND_DEADLINE_MS,
          () => tookTooLong("Kafka topic creation"),
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

/** What a Kafka call that outlived SEND_DEADLINE_MS fails with. */
function tookTooLong(what: string): Error {
  return new Error(`${what} took longer than ${SEND_DEADLINE_MS} ms`);
}

/** kafkajs logs every retry of an outage; they go to debug, and log-service reports the outage itself. */
function pinoLogCreator(logger: Logger): logCreator {
  return () =>
    ({ namespace, log }) => {
      const { message, timestamp: _timestamp, ...extra } = log;
      logger.debug({ kafkajs: namespace, ...extra }, message);
    };
}
