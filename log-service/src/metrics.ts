import type { SinkStatus } from "./sink.ts";

/** Event counters since start-up; every event that arrives ends up in exactly one outcome counter. */
export class Counters {
  /** Valid events made durable (on Kafka, in the spool, or in the file). */
  accepted = 0;
  /** Invalid events refused. */
  rejected = 0;
  /** Valid events refused because no durable place had room; their client was told they were not accepted. */
  dropped = 0;
  /** Records acknowledged by Kafka or written to the file, including spool replays. */
  published = 0;
  /** Records written to the spool while Kafka was unreachable. */
  spooled = 0;
}

/** The Prometheus text exposition of the counters and the sink's state. */
export function renderMetrics(c: Counters, s: SinkStatus): string {
  const lines: string[] = [];
  const metric = (name: string, type: "counter" | "gauge", help: string, value: number) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`);
  };
  metric("log_events_accepted_total", "counter", "Valid events made durable.", c.accepted);
  metric("log_events_rejected_total", "counter", "Invalid events refused.", c.rejected);
  metric("log_events_published_total", "counter", "Records acknowledged by Kafka or written to the file.", c.published);
  metric("log_events_spooled_total", "counter", "Records written to the disk spool while Kafka was down.", c.spooled);
  metric(
    "log_events_dropped_total",
    "counter",
    "Valid events refused for lack of room; their client was told they were not accepted.",
    c.dropped,
  );
  metric("log_spool_bytes", "gauge", "Disk space the spool uses.", s.spool.bytes);
  metric("log_spool_events", "gauge", "Records in the spool waiting for Kafka.", s.spool.events);
  metric("log_spool_max_bytes", "gauge", "The spool's size limit.", s.spool.max_bytes);
  metric("log_sink_connected", "gauge", "1 when Kafka (or the file) is reachable.", s.connected ? 1 : 0);
  metric("log_sink_accepting", "gauge", "1 when new events can be made durable.", s.accepting ? 1 : 0);
  return `${lines.join("\n")}\n`;
}
