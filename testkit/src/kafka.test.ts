import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { Kafka, logLevel, Partitioners } from "kafkajs";
import { KAFKA_VERSION, type KafkaBroker, startKafka } from "./kafka.ts";
import { readLogChannel } from "./log-channel.ts";

const TOPIC = "log-channel";
const COUNT = 100;

let broker: KafkaBroker;
let kafka: Kafka;

before(async () => {
  broker = await startKafka();
  kafka = new Kafka({ brokers: [broker.brokers], clientId: "kafka-test", logLevel: logLevel.ERROR });
});

after(async () => {
  await broker?.stop();
});

test("pom.xml pins the same Kafka version as KAFKA_VERSION", () => {
  const pom = readFileSync(new URL("../kafka/pom.xml", import.meta.url), "utf8");
  assert.match(pom, new RegExp(`<kafka\\.version>${KAFKA_VERSION.replaceAll(".", "\\.")}</kafka\\.version>`));
});

test("create, produce with acks=all, consume, and keep data across a restart", { timeout: 180_000 }, async () => {
  const admin = kafka.admin();
  await admin.connect();
  assert.equal(await admin.createTopics({ topics: [{ topic: TOPIC, numPartitions: 3, replicationFactor: 1 }] }), true);
  assert.ok((await admin.listTopics()).includes(TOPIC));
  await admin.disconnect();

  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const sent = Array.from({ length: COUNT }, (_, i) => ({ key: `k${i}`, value: JSON.stringify({ seq: i }) }));
  const results = await producer.send({ topic: TOPIC, acks: -1, messages: sent });
  await producer.disconnect();
  assert.ok(results.every((r) => r.errorCode === 0));
  assert.ok(new Set(results.map((r) => r.partition)).size > 1, "keys should spread over partitions");

  const expected = sent.map((m) => m.value).sort();
  assert.deepEqual((await consumeAll("test-group-1")).sort(), expected);
  assert.equal(await committed(kafka, "test-group-1"), COUNT);

  await broker.stop();
  await broker.start();

  const reconnected = new Kafka({ brokers: [broker.brokers], clientId: "kafka-test-2", logLevel: logLevel.ERROR });
  const admin2 = reconnected.admin();
  await admin2.connect();
  assert.ok((await admin2.listTopics()).includes(TOPIC));
  await admin2.disconnect();
  assert.deepEqual((await consumeAll("test-group-2")).sort(), expected);
  // Committed group offsets live in __consumer_offsets, so they must survive the restart too.
  assert.equal(await committed(reconnected, "test-group-1"), COUNT);
});

/** Every value on the topic, read by a consumer of this group (which commits its offsets). */
async function consumeAll(groupId: string): Promise<string[]> {
  const records = await readLogChannel(broker.brokers, (r) => r.length >= COUNT, { topic: TOPIC, groupId });
  return records.map((r) => r.raw);
}

async function committed(client: Kafka, groupId: string): Promise<number> {
  const admin = client.admin();
  await admin.connect();
  try {
    const [offsets] = await admin.fetchOffsets({ groupId, topics: [TOPIC] });
    // "-1" means nothing committed for that partition.
    return (offsets?.partitions ?? []).reduce((n, p) => n + Math.max(0, Number(p.offset)), 0);
  } finally {
    await admin.disconnect();
  }
}
