import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Serving } from "@merch/gen/grpc/health/v1/health_pb";
import { ServerReflection, ServerReflectionRequestSchema } from "@merch/gen/grpc/reflection/v1/reflection_pb";
import { LogLevel, StreamLogsRequestSchema } from "@merch/gen/merch/log/v1/log_pb";
import type { LogRecord } from "@merch/kit";
import { violationsOf } from "@merch/kit";
import { type KafkaBroker, REPO_ROOT, readIds, startKafka, topicSize } from "@merch/testkit";
import {
  batches,
  type InProcessLogService,
  isAscending,
  logEvent,
  metricsOf,
  seqsByUser,
  startInProcess,
  statusOf,
  streamOf,
  userEvents,
} from "./test-support/index.ts";

let broker: KafkaBroker;
let log: InProcessLogService;
const TOPIC = "log-channel";

before(async () => {
  broker = await startKafka();
  log = await startInProcess({ KAFKA_BROKERS: broker.brokers, KAFKA_TOPIC: TOPIC });
});

after(async () => {
  await log?.stop();
  await broker?.stop();
});

const RFC3339_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const RECORD_KEYS = [
  "attributes",
  "event",
  "http",
  "id",
  "level",
  "message",
  "received_at",
  "request_id",
  "service",
  "span_id",
  "time",
  "trace_id",
  "user_id",
];

function assertRecordShape(r: LogRecord, key: string): void {
  assert.deepEqual(Object.keys(r).sort(), RECORD_KEYS);
  assert.equal(typeof r.id, "string");
  assert.match(r.time, RFC3339_MS);
  assert.match(r.received_at, RFC3339_MS);
  assert.ok(["debug", "info", "warn", "error"].includes(r.level), r.level);
  assert.equal(typeof r.service, "string");
  assert.equal(typeof r.event, "string");
  assert.equal(typeof r.message, "string");
  assert.ok(r.user_id === null || Number.isInteger(r.user_id));
  assert.ok(r.request_id === null || typeof r.request_id === "string");
  // This stream sends no trace context: the fields are there, and null.
  assert.equal(r.trace_id, null);
  assert.equal(r.span_id, null);
  if (r.http !== null) {
    assert.deepEqual(Object.keys(r.http).sort(), ["duration_ms", "method", "path", "status"]);
    assert.equal(typeof r.http.method, "string");
    assert.equal(typeof r.http.path, "string");
    assert.ok(Number.isInteger(r.http.status));
    assert.equal(typeof r.http.duration_ms, "number");
  }
  assert.equal(typeof r.attributes, "object");
  assert.ok(r.attributes !== null && !Array.isArray(r.attributes));
  for (const v of Object.values(r.attributes)) assert.equal(typeof v, "string");
  assert.equal(key, r.user_id !== null ? String(r.user_id) : (r.request_id ?? r.id));
}

test("10,000 events over one gRPC stream arrive on log-channel exactly once, in order per user", async () => {
  const events = userEvents(10_000, 25);
  const res = await log.grpc.streamLogs(streamOf(batches(events, 100)));
  assert.equal(res.accepted, 10_000n);
  assert.equal(res.rejected, 0n);

  const records = await readIds(
    broker.brokers,
    TOPIC,
    events.map((e) => e.id),
  );
  assert.equal(records.length, 10_000, "no duplicates");
  assert.equal(await topicSize(broker.brokers, TOPIC), 10_000, "nothing beyond the events sent");
  const byId = new Map(events.map((e) => [e.id, e]));
  const partitionOfUser = new Map<number, number>();
  for (const { key, partition, record } of records) {
    assertRecordShape(record, key);
    const sent = byId.get(record.id);
    assert.ok(sent, `unknown id ${record.id}`);
    assert.equal(record.user_id, sent.userId ?? null);
    assert.equal(record.request_id, sent.requestId === "" ? null : sent.requestId);
    assert.equal(record.attributes.seq, sent.attributes.seq);
    assert.equal(record.http === null, sent.http === undefined);
    if (sent.time !== undefined) {
      assert.equal(record.time, new Date(Number(sent.time.seconds) * 1000 + sent.time.nanos / 1e6).toISOString());
    } else {
      assert.equal(record.time, record.received_at, "no time: the receive time");
    }
    if (record.user_id !== null) {
      assert.equal(partitionOfUser.get(record.user_id) ?? partition, partition, "one partition per user");
      partitionOfUser.set(record.user_id, partition);
    }
  }
  assert.equal(partitionOfUser.size, new Set(events.map((e) => e.userId).filter((u) => u !== undefined)).size);
  assert.ok(new Set(partitionOfUser.values()).size > 1, "users spread over partitions");
  for (const [user, seqs] of seqsByUser(records)) {
    assert.ok(isAscending(seqs), `user ${user}'s events arrive in the order sent`);
  }
});

test("invalid events on a stream are rejected and reported while valid ones still arrive", async () => {
  const topic = "log-channel"; // same topic: ids tell the events apart
  const ok1 = logEvent({ userId: 7, attributes: { seq: "1" } });
  const noId = logEvent({ id: "" });
  const unspecified = logEvent({ level: LogLevel.UNSPECIFIED });
  const ok2 = logEvent({ userId: 7, attributes: { seq: "2" } });
  const unknownLevel = logEvent({ level: 42 as LogLevel });
  const secret = logEvent({ attributes: { password: "hunter22" } });
  const noService = logEvent({ service: "" });
  const ok3 = logEvent({ attributes: { seq: "3" } });
  const res = await log.grpc.streamLogs(
    streamOf([
      create(StreamLogsRequestSchema, { events: [ok1, noId, unspecified] }),
      create(StreamLogsRequestSchema, { events: [] }),
      create(StreamLogsRequestSchema, { events: [ok2, unknownLevel, secret, noService, ok3] }),
    ]),
  );
  assert.equal(res.accepted, 3n);
  assert.equal(res.rejected, 5n);
  assert.deepEqual(
    res.rejections.map((r) => [r.eventId, r.reason.split(":")[0]]),
    [
      ["", "id"],
      [unspecified.id, "level"],
      [unknownLevel.id, "level"],
      [secret.id, 'attributes["password"]'],
      [noService.id, "service"],
    ],
  );
  assert.ok(
    res.rejections.every((r) => !r.reason.includes("hunter22")),
    "a secret is never echoed",
  );

  const records = await readIds(broker.brokers, topic, [ok1.id, ok2.id, ok3.id]);
  const ids = new Set(records.map((r) => r.record.id));
  for (const bad of [unspecified, unknownLevel, secret, noService]) assert.ok(!ids.has(bad.id));
  assert.ok(records.every((r) => r.record.id !== "" && !JSON.stringify(r.record).includes("hunter22")));
});

test("WriteLogs with an invalid event is INVALID_ARGUMENT naming the field, and publishes nothing", async () => {
  const topic = "write-logs";
  const other = await startInProcess({ KAFKA_BROKERS: broker.brokers, KAFKA_TOPIC: topic });
  try {
    const [a, b, c] = [logEvent(), logEvent(), logEvent()];
    const bad = logEvent({ level: LogLevel.UNSPECIFIED, http: { method: "GET", path: "/", status: 1000 } });
    for (const client of [other.grpc, other.connectJson]) {
      const err = await client.writeLogs({ events: [a, bad, b, c] }).then(
        () => assert.fail("WriteLogs should refuse the batch"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof Error && "code" in err);
      assert.equal(err.code, Code.InvalidArgument);
      assert.deepEqual(
        violationsOf(err as Parameters<typeof violationsOf>[0])
          .map((v) => v.field)
          .sort(),
        ["events[1].http.status", "events[1].level"],
      );
    }
    const marker = logEvent({ event: "marker" });
    assert.equal((await other.grpc.writeLogs({ events: [marker] })).accepted, 1n);
    const records = await readIds(broker.brokers, topic, [marker.id]);
    assert.deepEqual(
      records.map((r) => r.record.id),
      [marker.id],
      "only the marker, nothing of the refused batches",
    );
    assert.equal(await topicSize(broker.brokers, topic), 1);
    const metrics = await metricsOf(other.metricsUrl);
    assert.equal(metrics.get("log_events_rejected_total"), 8);
    assert.equal(metrics.get("log_events_accepted_total"), 1);
  } finally {
    await other.stop();
  }
});

test("health is SERVING, reflection lists the service, /metrics and /status answer", async () => {
  const health = createClient(Health, log.grpcTransport);
  assert.equal((await health.check({ service: "merch.log.v1.LogService" })).status, Serving.SERVING);
  assert.equal((await health.check({ service: "" })).status, Serving.SERVING);

  const reflection = createClient(ServerReflection, log.grpcTransport);
  const names: string[] = [];
  for await (const res of reflection.serverReflectionInfo(
    streamOf([create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } })]),
  )) {
    if (res.messageResponse.case === "listServicesResponse") {
      names.push(...res.messageResponse.value.service.map((s) => s.name));
    }
  }
  assert.ok(names.includes("merch.log.v1.LogService"), names.join(", "));

  const status = await statusOf(log.baseUrl);
  assert.equal(status.sink, "kafka");
  assert.equal(status.connected, true);
  assert.equal(status.accepting, true);
  assert.deepEqual(status.spool, { bytes: 0, events: 0, max_bytes: 64 * 1024 * 1024 });
  const metrics = await metricsOf(log.metricsUrl);
  assert.equal(metrics.get("log_sink_connected"), 1);
  assert.equal(metrics.get("log_events_dropped_total"), 0);
  assert.equal(metrics.get("log_events_spooled_total"), 0);
  assert.ok((metrics.get("log_events_published_total") ?? 0) >= 10_003);
});

test("tail-logs prints log-channel from Kafka, one JSON record per line", { timeout: 120_000 }, async () => {
  const before = await topicSize(broker.brokers, TOPIC);
  const tail = spawn(process.execPath, [join(REPO_ROOT, "scripts", "tail-logs.ts"), "--from-beginning"], {
    cwd: REPO_ROOT,
    env: { ...process.env, KAFKA_BROKERS: broker.brokers, KAFKA_TOPIC: TOPIC },
    stdio: ["ignore", "pipe", "ignore"],
  });
  try {
    const marker = logEvent({ event: "tail.marker" });
    let lines = 0;
    let sent = false;
    for await (const line of createInterface({ input: tail.stdout })) {
      const record = JSON.parse(line) as LogRecord;
      assert.equal(typeof record.id, "string");
      lines++;
      if (lines === before && !sent) {
        sent = true;
        assert.equal((await log.grpc.writeLogs({ events: [marker] })).accepted, 1n);
      }
      if (record.id === marker.id) break;
    }
    assert.equal(lines, before + 1);
  } finally {
    tail.kill("SIGTERM");
  }
});
