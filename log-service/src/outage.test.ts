import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Serving } from "@merch/gen/grpc/health/v1/health_pb";
import type { StreamLogsRequest } from "@merch/gen/merch/log/v1/log_pb";
import { ErrorReason, reasonOf } from "@merch/kit";
import { type KafkaBroker, readIds, startKafka } from "@merch/testkit";
import {
  batches,
  eventually,
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
const services: InProcessLogService[] = [];

before(async () => {
  broker = await startKafka();
});

after(async () => {
  for (const s of services) await s.stop();
  await broker?.stop();
});

async function logService(env: Record<string, string>): Promise<InProcessLogService> {
  const s = await startInProcess({ KAFKA_BROKERS: broker.brokers, ...env });
  services.push(s);
  return s;
}

test("broker stopped mid-stream and started again: every event arrives, via the spool, in order per user", async (t) => {
  const topic = "outage";
  const log = await logService({ KAFKA_TOPIC: topic });
  const events = userEvents(3000, 12);
  const requests = batches(events, 50);
  let stopping: Promise<void> | undefined;
  let restarted = false;
  // The broker starts shutting down after a third of the stream while events keep coming (so
  // sends fail mid-flight), is down for the next sixth, and comes back for the last third. The
  // stream stays open throughout.
  async function* withOutage(): AsyncGenerator<StreamLogsRequest> {
    for (const [i, request] of requests.entries()) {
      if (i === 20) {
        // Published directly first, so the outage interrupts a working pipeline.
        await eventually(
          "first 1000 published",
          () => metricsOf(log.metricsUrl),
          (m) => m.get("log_events_published_total") === 1000,
        );
        stopping = broker.stop();
      }
      if (i === 30) await stopping;
      if (i === 40) {
        await broker.start();
        restarted = true;
      }
      yield request;
    }
  }
  const res = await log.grpc.streamLogs(withOutage());
  assert.ok(restarted);
  assert.equal(res.accepted, 3000n);
  assert.equal(res.rejected, 0n);

  const metrics = await metricsOf(log.metricsUrl);
  const spooled = metrics.get("log_events_spooled_total") ?? 0;
  assert.ok(spooled > 0, "events went to the spool while the broker was down");
  assert.ok(spooled <= 2000, "at least the first 1000 went straight to Kafka");
  assert.equal(metrics.get("log_events_dropped_total"), 0);

  const records = await readIds(
    broker.brokers,
    topic,
    events.map((e) => e.id),
  );
  const distinct = new Set(records.map((r) => r.record.id)).size;
  assert.equal(distinct, 3000);
  t.diagnostic(`spooled ${spooled}; read ${records.length} records, ${records.length - distinct} duplicates`);
  for (const [user, seqs] of seqsByUser(records)) {
    assert.ok(isAscending(seqs), `user ${user}'s first copies arrive in the order sent`);
  }
  // The spool empties once the broker is back.
  await eventually(
    "spool drained",
    () => statusOf(log.baseUrl),
    (s) => s.spool.events === 0 && s.spool.bytes === 0 && s.connected,
  );
});

test("spool full while Kafka is down: the overflow is dropped, counted, and not accepted; the client resends it", {
  timeout: 180_000,
}, async () => {
  const topic = "bounded";
  await broker.stop();
  const log = await logService({ KAFKA_TOPIC: topic, SPOOL_MAX_BYTES: "4096" });
  const health = createClient(Health, log.grpcTransport);
  assert.equal((await health.check({ service: "merch.log.v1.LogService" })).status, Serving.SERVING, "spool has room");

  const events = userEvents(40, 3);
  // The client keeps its stream open after sending: log-service must answer without waiting
  // for it to half-close.
  let release = () => {};
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  async function* sendThenHold(): AsyncGenerator<StreamLogsRequest> {
    yield* batches(events, 4);
    await held;
  }
  const first = await log.grpc.streamLogs(sendThenHold()).finally(release);
  const accepted = Number(first.accepted);
  assert.equal(first.rejected, 0n);
  assert.ok(accepted > 0 && accepted < 40, `some fit in 4 KiB, not all: accepted ${accepted}`);

  const metrics = await metricsOf(log.metricsUrl);
  const dropped = metrics.get("log_events_dropped_total") ?? 0;
  assert.ok(dropped > 0);
  assert.equal(metrics.get("log_events_accepted_total"), accepted);
  assert.equal(metrics.get("log_events_spooled_total"), accepted);
  assert.ok((metrics.get("log_spool_bytes") ?? 0) <= 4096);
  assert.equal(metrics.get("log_sink_connected"), 0);
  const status = await statusOf(log.baseUrl);
  assert.equal(status.dropped, dropped);
  assert.equal(status.accepting, false);
  assert.equal(status.spool.events, accepted);
  assert.equal((await health.check({ service: "merch.log.v1.LogService" })).status, Serving.NOT_SERVING);
  const refused = await log.grpc.writeLogs({ events: [logEvent()] }).then(
    () => assert.fail("no room: WriteLogs must fail"),
    (e: unknown) => ConnectError.from(e),
  );
  assert.equal(refused.code, Code.ResourceExhausted);
  assert.equal(reasonOf(refused), ErrorReason.LOG_BUFFER_FULL);

  // What the client does: wait for health, then resend everything after the accepted prefix.
  await broker.start();
  await eventually(
    "health SERVING",
    () => health.check({ service: "merch.log.v1.LogService" }),
    (h) => h.status === Serving.SERVING,
  );
  const second = await log.grpc.streamLogs(streamOf(batches(events.slice(accepted), 4)));
  assert.equal(Number(second.accepted), 40 - accepted);

  const records = await readIds(
    broker.brokers,
    topic,
    events.map((e) => e.id),
  );
  assert.equal(new Set(records.map((r) => r.record.id)).size, 40);
  for (const [user, seqs] of seqsByUser(records)) {
    assert.ok(isAscending(seqs), `user ${user}'s events arrive in the order sent`);
  }
});
