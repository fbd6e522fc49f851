import { resolve } from "node:path";
import { type MetricsListen, readConfig, readMetricsListen, readServiceCredential } from "@merch/kit";

export interface LogServiceConfig {
  port: number;
  host: string;
  /** Where /metrics is served (loopback by default; never the RPC port). */
  metrics: MetricsListen;
  /** host:port of each bootstrap broker; empty means no Kafka: records go to a JSON Lines file. */
  kafkaBrokers: string[];
  kafkaTopic: string;
  kafkaClientId: string;
  /** Used only when log-service creates the topic because it is missing. */
  kafkaPartitions: number;
  kafkaReplicationFactor: number;
  /** Absolute; holds the spool (Kafka) or log-channel.jsonl (no Kafka). */
  dataDir: string;
  /** Most disk space the spool may use while Kafka is unreachable; what does not fit is dropped and counted. */
  spoolMaxBytes: number;
  /** What callers must present to send events (kit/src/service-credential.ts). */
  serviceCredential: string | undefined;
  shutdownGraceMs: number;
}

const MIB = 1024 * 1024;
const HOST_PORT = /^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9A-Fa-f:.]+\]:\d{1,5}$/;
// Kafka's own rule for topic names.
const TOPIC = /^[A-Za-z0-9._-]{1,249}$/;

export function loadConfig(env: NodeJS.ProcessEnv = process.env): LogServiceConfig {
  return readConfig((e) => {
    const kafkaBrokers = e.list("KAFKA_BROKERS");
    for (const broker of kafkaBrokers) {
      const port = Number(broker.slice(broker.lastIndexOf(":") + 1));
      if (!HOST_PORT.test(broker) || port < 1 || port > 65535) {
        e.problems.push(`KAFKA_BROKERS must be a comma-separated list of host:port, got "${broker}"`);
      }
    }
    const kafkaTopic = e.string("KAFKA_TOPIC", "log-channel");
    if (!TOPIC.test(kafkaTopic)) {
      e.problems.push(`KAFKA_TOPIC must be 1 to 249 characters of A-Z, a-z, 0-9, . _ -, got "${kafkaTopic}"`);
    }
    return {
      port: e.int("PORT", 50052, 0, 65535),
      // Loopback unless told otherwise: only the gateway sends events (compose sets 0.0.0.0).
      host: e.string("HOST", "127.0.0.1"),
      metrics: readMetricsListen(e, 9466),
      kafkaBrokers,
      kafkaTopic,
      kafkaClientId: e.string("KAFKA_CLIENT_ID", "log-service"),
      kafkaPartitions: e.int("KAFKA_PARTITIONS", 3, 1, 1000),
      kafkaReplicationFactor: e.int("KAFKA_REPLICATION_FACTOR", 1, 1, 16),
      dataDir: resolve(e.string("DATA_DIR", "./.data")),
      // Below a few KiB the spool could not hold even one large event.
      spoolMaxBytes: e.int("SPOOL_MAX_BYTES", 64 * MIB, 1024, Number.MAX_SAFE_INTEGER),
      serviceCredential: readServiceCredential(e),
      shutdownGraceMs: e.int("SHUTDOWN_GRACE_MS", 10_000, 0, 120_000),
    };
  }, env);
}
