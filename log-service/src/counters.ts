// Plain numbers on the hot path: the queue, the writers and the RPCs count here, and the metrics
// (metrics.ts) read them when Prometheus scrapes. Their own module, so that what counts needs
// nothing of what reports.

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
