import { Counter, Histogram, SECONDS_BUCKETS, ServiceMetrics } from "@merch/kit";
import { Counters } from "./counters.ts";
import type { SinkStatus } from "./sink.ts";

/**
 * log-service's metrics: the RPCs (kit), the event counters (kept as plain numbers on the hot
 * path and read when Prometheus scrapes), the spool and the sink's state, and Kafka's latency.
 */
export class LogMetrics extends ServiceMetrics {
  readonly counters = new Counters();
  readonly publishDuration = new Histogram({
    name: "kafka_publish_duration_seconds",
    help: "Time from a batch's send to Kafka's acknowledgement of every record (acks=all).",
    buckets: SECONDS_BUCKETS,
    registers: [this.registry],
  });
  readonly publishErrors = new Counter({
    name: "kafka_publish_errors_total",
    help: "Sends to Kafka that failed (the batch went to the spool, or is replayed later).",
    registers: [this.registry],
  });

  constructor(status: () => SinkStatus) {
    super("log-service");
    const c = this.counters;
    this.counter("log_events_accepted_total", "Valid events made durable.", () => c.accepted);
    this.counter("log_events_rejected_total", "Invalid events refused.", () => c.rejected);
    this.counter(
      "log_events_published_total",
      "Records acknowledged by Kafka or written to the file.",
      () => c.published,
    );
    this.counter(
      "log_events_spooled_total",
      "Records written to the disk spool while Kafka was down.",
      () => c.spooled,
    );
    this.counter(
      "log_events_dropped_total",
      "Valid events refused for lack of room; their client was told they were not accepted.",
      () => c.dropped,
    );
    this.gauge("log_spool_bytes", "Disk space the spool uses.", () => status().spool.bytes);
    this.gauge("log_spool_events", "Records in the spool waiting for Kafka.", () => status().spool.events);
    this.gauge("log_spool_max_bytes", "The spool's size limit.", () => status().spool.max_bytes);
    this.gauge("log_sink_connected", "1 when Kafka (or the file) is reachable.", () => (status().connected ? 1 : 0));
    this.gauge("log_sink_accepting", "1 when new events can be made durable.", () => (status().accepting ? 1 : 0));
  }
}
