import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { LogLevel } from "@merch/gen/merch/log/v1/log_pb";
import type { LogRecord } from "@merch/kit";
import { violationsOf } from "@merch/kit";
import { REPO_ROOT } from "@merch/testkit";
import { CHANNEL_FILE } from "./file-writer.ts";
import {
  batches,
  type InProcessLogService,
  logEvent,
  metricsOf,
  startInProcess,
  statusOf,
  streamOf,
  TEST_LOG_CREDENTIAL,
  userEvents,
} from "./test-support/index.ts";

let log: InProcessLogService;

before(async () => {
  log = await startInProcess();
});

after(async () => {
  await log?.stop();
});

function channel(): LogRecord[] {
  return readFileSync(join(log.dataDir, CHANNEL_FILE), "utf8")
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as LogRecord);
}

test("without KAFKA_BROKERS, streamed events are appended to DATA_DIR/log-channel.jsonl", async () => {
  const events = userEvents(500, 7);
  const res = await log.grpc.streamLogs(streamOf(batches(events, 50)));
  assert.equal(res.accepted, 500n);
  const records = channel();
  assert.deepEqual(
    records.slice(-500).map((r) => r.id),
    events.map((e) => e.id),
    "every event once, in the order sent",
  );
  const status = await statusOf(log.baseUrl);
  assert.equal(status.sink, "file");
  assert.equal(status.connected, true);
  assert.equal(status.accepting, true);
});

test("a stream reports the first 100 rejections and counts them all", async () => {
  const invalid = Array.from({ length: 150 }, (_, i) => logEvent({ service: "", attributes: { n: String(i) } }));
  const valid = userEvents(10, 2);
  const res = await log.grpc.streamLogs(streamOf(batches([...invalid, ...valid], 40)));
  assert.equal(res.accepted, 10n);
  assert.equal(res.rejected, 150n);
  assert.equal(res.rejections.length, 100);
  assert.deepEqual(
    res.rejections.map((r) => r.eventId),
    invalid.slice(0, 100).map((e) => e.id),
  );
  assert.equal(res.rejections[0]?.reason, "service: is required");
  assert.deepEqual(
    channel()
      .slice(-10)
      .map((r) => r.id),
    valid.map((e) => e.id),
  );
});

test("WriteLogs over Connect JSON on HTTP/1.1", async () => {
  const events = [logEvent({ userId: 3 }), logEvent({ requestId: "r-1" })];
  assert.equal((await log.connectJson.writeLogs({ events })).accepted, 2n);
  assert.deepEqual(
    channel()
      .slice(-2)
      .map((r) => [r.id, r.user_id, r.request_id]),
    [
      [events[0]?.id, 3, null],
      [events[1]?.id, null, "r-1"],
    ],
  );

  const err = await log.connectJson.writeLogs({ events: [logEvent(), logEvent({ event: "" })] }).then(
    () => assert.fail("must be refused"),
    (e: unknown) => ConnectError.from(e),
  );
  assert.equal(err.code, Code.InvalidArgument);
  assert.deepEqual(
    violationsOf(err).map((v) => v.field),
    ["events[1].event"],
  );
});

test("WriteLogs as a plain JSON POST, as curl sends it (with the service credential)", async () => {
  const id = "0b8f8a52-5a55-4b8e-9a39-3f7f1b1f4a01";
  const headers = { "content-type": "application/json", "x-service-credential": TEST_LOG_CREDENTIAL };
  const res = await fetch(`${log.baseUrl}/merch.log.v1.LogService/WriteLogs`, {
    method: "POST",
    headers,
    body: JSON.stringify({
      events: [
        {
          id,
          time: "2025-06-01T12:00:00.123Z",
          level: "LOG_LEVEL_WARN",
          service: "web",
          event: "page.error",
          message: "chunk failed to load",
          user_id: 42,
          http: { method: "GET", path: "/orders", status: 503, duration_ms: 12.5 },
          attributes: { chunk: "orders.js" },
        },
      ],
    }),
  });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { accepted: "1" });
  const record = channel().at(-1);
  assert.ok(record);
  assert.deepEqual(
    { ...record, received_at: "" },
    {
      id,
      time: "2025-06-01T12:00:00.123Z",
      level: "warn",
      service: "web",
      event: "page.error",
      message: "chunk failed to load",
      user_id: 42,
      request_id: null,
      http: { method: "GET", path: "/orders", status: 503, duration_ms: 12.5 },
      attributes: { chunk: "orders.js" },
      trace_id: null,
      span_id: null,
      received_at: "",
    },
  );

  const bad = await fetch(`${log.baseUrl}/merch.log.v1.LogService/WriteLogs`, {
    method: "POST",
    headers,
    body: JSON.stringify({ events: [{ id, level: LogLevel.UNSPECIFIED, service: "web", event: "x" }] }),
  });
  assert.equal(bad.status, 400);
  const body = (await bad.json()) as { code: string; message: string };
  assert.equal(body.code, "invalid_argument");
  assert.match(body.message, /events\[0\]\.level/);
  assert.equal((await metricsOf(log.metricsUrl)).get("log_events_rejected_total"), 150 + 2 + 1);
});

test("tail-logs follows the file: what is there with --from-beginning, then what is appended", {
  timeout: 60_000,
}, async () => {
  const tail = spawn(process.execPath, [join(REPO_ROOT, "scripts", "tail-logs.ts"), "--from-beginning"], {
    cwd: REPO_ROOT,
    env: { ...process.env, DATA_DIR: log.dataDir, KAFKA_BROKERS: "" },
    stdio: ["ignore", "pipe", "ignore"],
  });
  try {
    const before = channel().length;
    const later = logEvent({ event: "appended.later" });
    const lines: string[] = [];
    let sent = false;
    for await (const line of createInterface({ input: tail.stdout })) {
      lines.push(line);
      if (lines.length === before && !sent) {
        sent = true;
        assert.equal((await log.grpc.writeLogs({ events: [later] })).accepted, 1n);
      }
      if (lines.length === before + 1) break;
    }
    assert.equal((JSON.parse(lines.at(-1) ?? "{}") as LogRecord).id, later.id);
    assert.deepEqual(
      lines.slice(0, before).map((l) => (JSON.parse(l) as LogRecord).id),
      channel()
        .slice(0, before)
        .map((r) => r.id),
    );
  } finally {
    tail.kill("SIGTERM");
  }
});
