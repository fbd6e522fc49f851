import { LogService } from "@merch/gen/merch/log/v1/log_pb";
import type { DualHandler, Logger } from "@merch/kit";
import { startRpcServer } from "@merch/kit";
import type { LogServiceConfig } from "./config.ts";
import { FileWriter } from "./file-writer.ts";
import { KafkaWriter } from "./kafka-writer.ts";
import { logRpc } from "./log-rpc.ts";
import { LogMetrics } from "./metrics.ts";
import { Sink, type SinkStatus } from "./sink.ts";

export interface LogServiceHandle {
  readonly port: number;
  /** Where /metrics is served (METRICS_PORT), never the RPC port. */
  readonly metricsPort: number;
  /** Answers open streams with their counts, makes everything accepted durable, then stops. */
  close(): Promise<void>;
}

/** A safety net: the sink reports its changes as they happen. */
const HEALTH_RECHECK_MS = 5000;

export async function startLogService(config: LogServiceConfig, logger: Logger): Promise<LogServiceHandle> {
  // The sink's status is read at scrape time; the sink is made below.
  const metrics: LogMetrics = new LogMetrics((): SinkStatus => sink.status());
  const counters = metrics.counters;
  const writer =
    config.kafkaBrokers.length > 0
      ? await KafkaWriter.start({
          brokers: config.kafkaBrokers,
          clientId: config.kafkaClientId,
          topic: config.kafkaTopic,
          partitions: config.kafkaPartitions,
          replicationFactor: config.kafkaReplicationFactor,
          dataDir: config.dataDir,
          spoolMaxBytes: config.spoolMaxBytes,
          counters,
          logger,
          onSend(seconds, failed) {
            metrics.publishDuration.observe(seconds);
            if (failed) metrics.publishErrors.inc();
          },
        })
      : await FileWriter.open(config.dataDir, counters, logger);
  const sink: Sink = new Sink(writer, counters);

  const status: DualHandler = (_req, res) => {
    const s = sink.status();
    const body = { ...s, dropped: counters.dropped, accepted: counters.accepted, rejected: counters.rejected };
    res.writeHead(200, { "content-type": "application/json" });
    res.end(`${JSON.stringify(body)}\n`);
  };

  let server: Awaited<ReturnType<typeof startRpcServer>>;
  try {
    server = await startRpcServer({
      port: config.port,
      host: config.host,
      services: [LogService],
      routes(router) {
        router.service(LogService, logRpc(sink, counters));
      },
      serviceCredential: config.serviceCredential,
      logger,
      httpRoutes: { "/status": status },
      metrics,
      metricsListen: config.metrics,
    });
  } catch (err) {
    await sink.close();
    throw err;
  }

  // SERVING exactly while an event can be made durable: Kafka is up, or the spool has room.
  const followSink = server.health.follow(() => sink.status().accepting, {
    logger,
    signal: server.shutdownSignal,
    recheckMs: HEALTH_RECHECK_MS,
  });
  sink.onChange(followSink);

  return {
    port: server.port,
    metricsPort: server.metricsPort,
    async close() {
      await server.close(config.shutdownGraceMs);
      await sink.close();
    },
  };
}
