import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { LogEventSchema, LogLevel } from "@merch/gen/merch/log/v1/log_pb";
import { type LogRecord, SECRET_NAME_PARTS } from "@merch/kit";
import { encodeEvent, MAX_RECORD_BYTES, recordKey, toRecord, validateEvent } from "./events.ts";
import { logEvent } from "./test-support/index.ts";

const fields = (e: Parameters<typeof validateEvent>[0]) => validateEvent(e, "events[0]").map((v) => v.field);

test("a minimal event is valid; each required field is named when missing", () => {
  assert.deepEqual(fields(logEvent()), []);
  assert.deepEqual(fields(create(LogEventSchema, {})), [
    "events[0].id",
    "events[0].level",
    "events[0].service",
    "events[0].event",
  ]);
});

test("levels: UNSPECIFIED and unknown numbers are refused", () => {
  for (const level of [LogLevel.DEBUG, LogLevel.INFO, LogLevel.WARN, LogLevel.ERROR]) {
    assert.deepEqual(fields(logEvent({ level })), []);
  }
  for (const level of [LogLevel.UNSPECIFIED, 5, -1, 99] as LogLevel[]) {
    assert.deepEqual(fields(logEvent({ level })), ["events[0].level"]);
  }
});

test("limits and formats", () => {
  const cases: [Parameters<typeof logEvent>[0], string][] = [
    [{ id: "x".repeat(129) }, "id"],
    [{ id: "has space" }, "id"],
    [{ service: "s".repeat(65) }, "service"],
    [{ event: "   " }, "event"],
    [{ event: "a\nb" }, "event"],
    [{ message: "m".repeat(8193) }, "message"],
    [{ userId: 0 }, "user_id"],
    [{ userId: -3 }, "user_id"],
    [{ requestId: "r".repeat(129) }, "request_id"],
    [{ http: { method: "", path: "/", status: 200 } }, "http.method"],
    [{ http: { method: "GET", path: "", status: 200 } }, "http.path"],
    [{ http: { method: "GET", path: "/", status: 99 } }, "http.status"],
    [{ http: { method: "GET", path: "/", status: 200, durationMs: -1 } }, "http.duration_ms"],
    [{ http: { method: "GET", path: "/", status: 200, durationMs: Number.NaN } }, "http.duration_ms"],
    [{ time: { seconds: 253_402_300_800n, nanos: 0 } }, "time"],
    [{ time: { seconds: 0n, nanos: 1_000_000_000 } }, "time"],
    [{ attributes: { "": "x" } }, 'attributes[""]'],
    [{ attributes: { k: "v".repeat(1025) } }, 'attributes["k"]'],
    [{ attributes: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, "v"])) }, "attributes"],
  ];
  for (const [init, field] of cases) {
    assert.deepEqual(
      fields(logEvent(init)),
      [`events[0].${field}`],
      JSON.stringify(init, (_, v) => String(v)),
    );
  }
  assert.deepEqual(fields(logEvent({ message: "multi\nline\tmessage is fine", userId: 2_147_483_647 })), []);
});

test("attributes named like secrets are refused, and the value is never echoed", () => {
  // Every name the gateway drops (kit's one list), and so none that it lets through.
  for (const key of [
    ...SECRET_NAME_PARTS,
    "new_password",
    "accessToken",
    "Authorization",
    "X-Api-Key",
    "client_secret",
  ]) {
    const violations = validateEvent(logEvent({ attributes: { [key]: "s3cr3t-value" } }), "");
    assert.equal(violations.length, 1, key);
    assert.ok(!violations[0]?.message.includes("s3cr3t-value"));
  }
  assert.deepEqual(fields(logEvent({ attributes: { reason: "invalid_token", order_id: "7" } })), []);
});

test("the record: snake_case JSON, RFC 3339 times, null for what is absent", () => {
  const receivedAt = new Date("2025-01-02T03:04:05.678Z");
  const bare = toRecord(logEvent({ id: "a", level: LogLevel.DEBUG, message: "" }), receivedAt);
  assert.deepEqual(bare, {
    id: "a",
    time: "2025-01-02T03:04:05.678Z",
    level: "debug",
    service: "gateway",
    event: "http.request",
    message: "",
    user_id: null,
    request_id: null,
    http: null,
    attributes: {},
    trace_id: null,
    span_id: null,
    received_at: "2025-01-02T03:04:05.678Z",
  } satisfies LogRecord);
  const full = toRecord(
    logEvent({
      id: "b",
      level: LogLevel.ERROR,
      time: { seconds: 1_700_000_000n, nanos: 987_654_321 },
      userId: 9,
      requestId: "req-1",
      http: { method: "POST", path: "/api/orders", status: 500, durationMs: 3.5 },
      attributes: { order_id: "12" },
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
      spanId: "00f067aa0ba902b7",
    }),
    receivedAt,
  );
  assert.equal(full.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  assert.equal(full.span_id, "00f067aa0ba902b7");
  assert.equal(full.time, "2023-11-14T22:13:20.987Z");
  assert.equal(full.level, "error");
  assert.equal(full.user_id, 9);
  assert.equal(full.request_id, "req-1");
  assert.deepEqual(full.http, { method: "POST", path: "/api/orders", status: 500, duration_ms: 3.5 });
  assert.deepEqual(full.attributes, { order_id: "12" });
  assert.equal(toRecord(logEvent({ time: timestampFromMs(0) }), receivedAt).time, "1970-01-01T00:00:00.000Z");
});

test("the key: the user, else the request, else the event id", () => {
  assert.equal(recordKey({ id: "e", user_id: 5, request_id: "r" }), "5");
  assert.equal(recordKey({ id: "e", user_id: null, request_id: "r" }), "r");
  assert.equal(recordKey({ id: "e", user_id: null, request_id: null }), "e");
  const encoded = encodeEvent(logEvent({ userId: 77 }), "", new Date());
  assert.ok(encoded.ok);
  assert.equal(encoded.record.key, "77");
  assert.equal(encoded.record.bytes, Buffer.byteLength(encoded.record.value));
});

test("an event whose JSON would exceed the record limit is refused as a whole", () => {
  // Each attribute is within limits; together, with multi-byte characters, they are not.
  const attributes = Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`k${i}`, "語".repeat(1024)]));
  const encoded = encodeEvent(logEvent({ attributes }), "events[2]", new Date());
  assert.equal(encoded.ok, false);
  assert.ok(!encoded.ok && encoded.violations[0]?.field === "events[2]");
  assert.ok(MAX_RECORD_BYTES < 32 * 1024 * 3);
});
