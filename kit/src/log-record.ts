// The shape of a record on log-channel, as the contract defines it: what log-service publishes
// (log-service/src/events.ts makes them) and what every reader of the channel reads.

/** One event as published on log-channel: one JSON object per Kafka record or file line. */
export interface LogRecord {
  id: string;
  /** When it happened, RFC 3339 UTC with milliseconds; the receive time when the event had none. */
  time: string;
  level: LevelName;
  service: string;
  event: string;
  message: string;
  user_id: number | null;
  request_id: string | null;
  http: { method: string; path: string; status: number; duration_ms: number } | null;
  attributes: Record<string, string>;
  /** The trace the event happened in, for finding it in the trace backend. */
  trace_id: string | null;
  span_id: string | null;
  received_at: string;
}

export type LevelName = "debug" | "info" | "warn" | "error";
