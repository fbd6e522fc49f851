import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { StreamLogsRequest } from "@merch/gen/merch/log/v1/log_pb";
import { type KafkaBroker, readIds, startKafka } from "@merch/testkit";
import {
  batches,
  type ChildLogService,
  eventually,
  isAscending,
  metricsOf,
  seqsByUser,
  spawnLogService,
  statusOf,
  streamOf,
  tempDir,
  userEvents,
} from "./test-support/index.ts";

let broker: KafkaBroker;
const children: ChildLogService[] = [];

before(async () => {
  broker = await startKafka();
});

after(async () => {
  for (const c of children) {
    c.closeClients();
    c.child.kill("SIGKILL");
  }
  await broker?.stop();
});

async function spawn(env: Record<string, string>): Promise<ChildLogService> {
  const c = await spawnLogService({ KAFKA_BROKERS: broker.brokers, ...env });
  children.push(c);
  return c;
}

test("log-service killed with events in its spool: restarted, it replays them before newer ones", {
  timeout: 180_000,
}, async (t) => {
  const topic = "crash";
  const dataDir = tempDir("log-service-crash");
  await broker.stop();

  const first = await spawn({ KAFKA_TOPIC: topic, DATA_DIR: dataDir });
  const spooledEvents = userEvents(600, 6);
  const res = await first.grpc.streamLogs(streamOf(batches(spooledEvents, 40)));
  assert.equal(res.accepted, 600n, "accepted while Kafka is down: they are in the spool");
  const status = await statusOf(first.baseUrl);
  assert.equal(status.connected, false);
  assert.equal(status.spool.events, 600);

  first.child.kill("SIGKILL");
  assert.equal(await first.exited, "SIGKILL");
  first.closeClients();

  await broker.start();
  const second = await spawn({ KAFKA_TOPIC: topic, DATA_DIR: dataDir });
  // New events right away: they must queue behind the spooled ones, not overtake them.
  const newer = userEvents(300, 6, 600);
  assert.equal((await second.grpc.streamLogs(streamOf(batches(newer, 30)))).accepted, 300n);

  const all = [...spooledEvents, ...newer];
  const records = await readIds(
    broker.brokers,
    topic,
    all.map((e) => e.id),
  );
  const distinct = new Set(records.map((r) => r.record.id)).size;
  assert.equal(distinct, 900);
  t.diagnostic(`read ${records.length} records, ${records.length - distinct} duplicates`);
  for (const [user, seqs] of seqsByUser(records)) {
    assert.ok(isAscending(seqs), `user ${user}: spooled events first, all in the order sent`);
  }
  await eventually(
    "spool empty",
    () => statusOf(second.baseUrl),
    (s) => s.spool.events === 0,
  );
  const metrics = await metricsOf(second.metricsUrl);
  assert.ok((metrics.get("log_events_published_total") ?? 0) >= 900, "replayed 600 + published 300");

  second.child.kill("SIGTERM");
  assert.equal(await second.exited, 0, "a clean shutdown on SIGTERM");
  second.closeClients();
});

test("SIGTERM answers an open stream with its counts, and everything it accepted is published", {
  timeout: 120_000,
}, async () => {
  const topic = "sigterm";
  const log = await spawn({ KAFKA_TOPIC: topic, DATA_DIR: tempDir("log-service-sigterm") });
  const events = userEvents(200, 4);
  let release = () => {};
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  // Sends everything, then keeps the stream open like the gateway does.
  async function* thenHold(): AsyncGenerator<StreamLogsRequest> {
    yield* batches(events, 20);
    await eventually(
      "all 200 seen by log-service",
      () => metricsOf(log.metricsUrl),
      (m) => m.get("log_events_accepted_total") === 200,
    );
    log.child.kill("SIGTERM");
    await held;
  }
  try {
    const res = await log.grpc.streamLogs(thenHold());
    assert.equal(res.accepted, 200n);
    assert.equal(res.rejected, 0n);
  } finally {
    release();
  }
  assert.equal(await log.exited, 0);
  log.closeClients();
  const records = await readIds(
    broker.brokers,
    topic,
    events.map((e) => e.id),
  );
  assert.equal(new Set(records.map((r) => r.record.id)).size, 200);
});
