import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { type LogEvent, LogLevel } from "@merch/gen/merch/log/v1/log_pb";
import { type FieldViolation, isSecretName, type LevelName, type LogRecord } from "@merch/kit";

/** A record ready for a sink: the Kafka key and the JSON text. */
export interface OutRecord {
  key: string;
  value: string;
  /** UTF-8 length of value. */
  bytes: number;
  /**
   * The ids of the request span the event came from (validateEvent checked them), which the span
   * publishing its batch links to (only while spans are exported; never stored). Ids, not a
   * Link: the link is made in sink.ts once per request span of a batch, not once per event.
   */
  traceId?: string;
  spanId?: string;
}

const LEVELS: ReadonlyMap<number, LevelName> = new Map([
  [LogLevel.DEBUG, "debug"],
  [LogLevel.INFO, "info"],
  [LogLevel.WARN, "warn"],
  [LogLevel.ERROR, "error"],
]);

// Each limit is generous for what the gateway sends, and together they keep a record well under
// Kafka's default 1 MiB message size; MAX_RECORD_BYTES is the final guard.
export const MAX_RECORD_BYTES = 64 * 1024;
const MAX_ID = 128;
const MAX_SERVICE = 64;
const MAX_EVENT = 128;
const MAX_MESSAGE = 8192;
const MAX_REQUEST_ID = 128;
const MAX_METHOD = 16;
const MAX_PATH = 2048;
const MAX_ATTRIBUTES = 32;
const MAX_ATTRIBUTE_KEY = 64;
const MAX_ATTRIBUTE_VALUE = 1024;
const MAX_USER_ID = 2_147_483_647;

// The ids are keys and dedupe handles: visible ASCII only, so they print and compare plainly.
const VISIBLE_ASCII = /^[\x21-\x7e]+$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what this finds
const CONTROL = /[\x00-\x1f\x7f]/;
// google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
const MIN_SECONDS = -62_135_596_800n;
const MAX_SECONDS = 253_402_300_799n;

/** Every problem of one event; `path` prefixes the field names, for example "events[3]" (or nothing). */
export function validateEvent(e: LogEvent, path: string): FieldViolation[] {
  const out: FieldViolation[] = [];
  const fail = (field: string, message: string) =>
    out.push({ field: path === "" ? field : `${path}.${field}`, message });
  const text = (field: string, v: string, max: number, required: boolean) => {
    if (v.trim() === "") {
      if (required) fail(field, "is required");
    } else if (v.length > max) fail(field, `must be at most ${max} characters`);
    else if (CONTROL.test(v)) fail(field, "must not contain control characters");
  };

  if (e.id === "") fail("id", "is required (a UUID)");
  else if (e.id.length > MAX_ID || !VISIBLE_ASCII.test(e.id)) {
    fail("id", `must be at most ${MAX_ID} visible ASCII characters (a UUID)`);
  }
  if (e.time !== undefined && !validTimestamp(e.time)) {
    fail("time", "must be a timestamp from year 1 to 9999 with nanos from 0 to 999999999");
  }
  if (!LEVELS.has(e.level)) fail("level", "must be LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN or LOG_LEVEL_ERROR");
  text("service", e.service, MAX_SERVICE, true);
  text("event", e.event, MAX_EVENT, true);
  if (e.message.length > MAX_MESSAGE) fail("message", `must be at most ${MAX_MESSAGE} characters`);
  if (e.userId !== undefined && (e.userId < 1 || e.userId > MAX_USER_ID)) {
    fail("user_id", "must be a positive integer when set");
  }
  if (e.requestId !== "" && (e.requestId.length > MAX_REQUEST_ID || !VISIBLE_ASCII.test(e.requestId))) {
    fail("request_id", `must be at most ${MAX_REQUEST_ID} visible ASCII characters`);
  }
  if (e.http !== undefined) {
    const h = e.http;
    if (!/^[A-Za-z]+$/.test(h.method) || h.method.length > MAX_METHOD) {
      fail("http.method", `must be 1 to ${MAX_METHOD} letters`);
    }
    text("http.path", h.path, MAX_PATH, true);
    if (!Number.isInteger(h.status) || h.status < 100 || h.status > 599) {
      fail("http.status", "must be an HTTP status from 100 to 599");
    }
    if (!Number.isFinite(h.durationMs) || h.durationMs < 0) {
      fail("http.duration_ms", "must be a finite number of milliseconds, 0 or more");
    }
  }
  if (e.traceId !== "" && !/^[0-9a-f]{32}$/.test(e.traceId)) fail("trace_id", "must be 32 lower-case hex digits");
  if (e.spanId !== "" && !/^[0-9a-f]{16}$/.test(e.spanId)) fail("span_id", "must be 16 lower-case hex digits");
  const attributes = Object.entries(e.attributes);
  if (attributes.length > MAX_ATTRIBUTES) fail("attributes", `must have at most ${MAX_ATTRIBUTES} entries`);
  for (const [key, value] of attributes) {
    const field = `attributes[${JSON.stringify(key)}]`;
    if (key === "" || key.length > MAX_ATTRIBUTE_KEY || CONTROL.test(key)) {
      fail(field, `key must be 1 to ${MAX_ATTRIBUTE_KEY} characters without control characters`);
    } else if (isSecretName(key)) {
      // A last line of defence: the emitting code gets told instead of leaking it.
      fail(field, "looks like a secret; passwords, tokens and keys must never be logged");
    } else if (value.length > MAX_ATTRIBUTE_VALUE) {
      fail(field, `value must be at most ${MAX_ATTRIBUTE_VALUE} characters`);
    }
  }
  return out;
}

function validTimestamp(t: Timestamp): boolean {
  return t.seconds >= MIN_SECONDS && t.seconds <= MAX_SECONDS && t.nanos >= 0 && t.nanos <= 999_999_999;
}

/** The published form of a valid event. */
export function toRecord(e: LogEvent, receivedAt: Date): LogRecord {
  const level = LEVELS.get(e.level);
  if (level === undefined) throw new Error(`toRecord on an unvalidated event (level ${e.level})`);
  const time =
    e.time === undefined ? receivedAt : new Date(Number(e.time.seconds) * 1000 + Math.floor(e.time.nanos / 1e6));
  return {
    id: e.id,
    time: time.toISOString(),
    level,
    service: e.service,
    event: e.event,
    message: e.message,
    user_id: e.userId ?? null,
    request_id: e.requestId === "" ? null : e.requestId,
    http:
      e.http === undefined
        ? null
        : { method: e.http.method, path: e.http.path, status: e.http.status, duration_ms: e.http.durationMs },
    // Own data properties only, whatever the keys are called.
    attributes: Object.fromEntries(Object.entries(e.attributes)),
    trace_id: e.traceId === "" ? null : e.traceId,
    span_id: e.spanId === "" ? null : e.spanId,
    received_at: receivedAt.toISOString(),
  };
}

/**
 * The Kafka key: the user when known, so that one user's events land on one partition and stay
 * in order; otherwise the request, then the event itself.
 */
export function recordKey(r: Pick<LogRecord, "id" | "user_id" | "request_id">): string {
  return r.user_id !== null ? String(r.user_id) : (r.request_id ?? r.id);
}

export type Encoded = { ok: true; record: OutRecord } | { ok: false; violations: FieldViolation[] };

/** Validates and encodes one event; `path` names it in violations. */
export function encodeEvent(e: LogEvent, path: string, receivedAt: Date): Encoded {
  const violations = validateEvent(e, path);
  if (violations.length > 0) return { ok: false, violations };
  const record = toRecord(e, receivedAt);
  const value = JSON.stringify(record);
  const bytes = Buffer.byteLength(value);
  if (bytes > MAX_RECORD_BYTES) {
    const field = path === "" ? "record" : path;
    return { ok: false, violations: [{ field, message: `must encode to at most ${MAX_RECORD_BYTES} bytes of JSON` }] };
  }
  return { ok: true, record: { key: recordKey(record), value, bytes } };
}

/** A record read back as JSON text (from the spool). */
export function outRecordOfJson(value: string): OutRecord {
  const r = JSON.parse(value) as Pick<LogRecord, "id" | "user_id" | "request_id">;
  return { key: recordKey(r), value, bytes: Buffer.byteLength(value) };
}
