import assert from "node:assert/strict";
import { appendFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import type { OutRecord } from "./events.ts";
import { Spool, type SpoolBatch } from "./spool.ts";
import { tempDir } from "./test-support/index.ts";

function records(from: number, count: number, pad = 0): OutRecord[] {
  return Array.from({ length: count }, (_, i) => {
    const value = JSON.stringify({ id: `e${from + i}`, user_id: null, request_id: null, pad: "x".repeat(pad) });
    return { key: `e${from + i}`, value, bytes: Buffer.byteLength(value) };
  });
}

async function drain(spool: Spool, maxRecords = 1000): Promise<string[]> {
  const ids: string[] = [];
  for (let batch = await spool.read(maxRecords, 1 << 20); batch; batch = await spool.read(maxRecords, 1 << 20)) {
    ids.push(...batch.records.map((r) => (JSON.parse(r.value) as { id: string }).id));
    await spool.commit(batch);
  }
  return ids;
}

const segments = (dir: string) => readdirSync(dir).filter((n) => n.endsWith(".jsonl"));

test("records come back in the order appended, with their keys, and a drained spool frees its files", async () => {
  const dir = tempDir("spool");
  const spool = await Spool.open(dir, 1 << 20);
  assert.equal(await spool.append(records(0, 10)), 10);
  assert.equal(await spool.append(records(10, 5)), 5);
  assert.equal(spool.events, 15);
  assert.ok(spool.bytes > 0);
  const first = (await spool.read(4, 1 << 20)) as SpoolBatch;
  assert.deepEqual(
    first.records.map((r) => r.key),
    ["e0", "e1", "e2", "e3"],
  );
  // Not committed: read again gives the same records.
  assert.deepEqual(
    (await spool.read(4, 1 << 20))?.records.map((r) => r.key),
    ["e0", "e1", "e2", "e3"],
  );
  await spool.commit(first);
  assert.equal(spool.events, 11);
  assert.deepEqual(
    await drain(spool, 3),
    Array.from({ length: 11 }, (_, i) => `e${i + 4}`),
  );
  assert.equal(spool.empty, true);
  assert.equal(spool.bytes, 0);
  assert.deepEqual(segments(dir), []);
  // Appends after draining start a new segment.
  assert.equal(await spool.append(records(15, 2)), 2);
  assert.deepEqual(await drain(spool), ["e15", "e16"]);
  await spool.close();
});

test("the bound: what does not fit is refused, a prefix is kept, and room returns as segments drain", async () => {
  const dir = tempDir("spool-bound");
  const spool = await Spool.open(dir, 4096);
  const big = records(0, 30, 200); // about 250 bytes each
  const kept = await spool.append(big);
  assert.ok(kept > 0 && kept < 30, `kept ${kept}`);
  assert.ok(spool.bytes <= 4096);
  assert.equal(spool.full, true);
  assert.equal(await spool.append(records(100, 1, 200)), 0);
  // Replaying frees whole segments, after which appends fit again.
  const batch = (await spool.read(kept, 1 << 20)) as SpoolBatch;
  await spool.commit(batch);
  assert.equal(spool.full, false);
  assert.equal(await spool.append(records(100, 1, 200)), 1);
  await spool.close();
});

test("a torn last line is cut on reopen, and the head survives a restart", async () => {
  const dir = tempDir("spool-recover");
  let spool = await Spool.open(dir, 1 << 20);
  await spool.append(records(0, 6));
  const batch = (await spool.read(2, 1 << 20)) as SpoolBatch;
  await spool.commit(batch);
  await spool.close();
  // A crash halfway through an append.
  const [segment] = segments(dir);
  appendFileSync(join(dir, segment as string), '{"id":"torn","us');

  spool = await Spool.open(dir, 1 << 20);
  assert.equal(spool.events, 4);
  assert.deepEqual(await drain(spool), ["e2", "e3", "e4", "e5"]);
  await spool.close();
});

test("segments roll, fully replayed ones are removed, and an unreadable head.json means replay from the start", async () => {
  const dir = tempDir("spool-segments");
  let spool = await Spool.open(dir, 8192); // segments roll at 1 KiB
  for (let i = 0; i < 8; i++) await spool.append(records(i * 4, 4, 40));
  const rolled = segments(dir).length;
  assert.ok(rolled > 2, `${rolled} segments`);
  // Replay half, then lose head.json: everything not yet removed comes again (duplicates, never loss).
  let replayed = 0;
  while (replayed < 16) {
    const batch = (await spool.read(4, 1 << 20)) as SpoolBatch;
    await spool.commit(batch);
    replayed += batch.lines;
  }
  assert.ok(segments(dir).length < rolled, "replayed segments are removed");
  await spool.close();
  writeFileSync(join(dir, "head.json"), "{not json");
  spool = await Spool.open(dir, 8192);
  const ids = await drain(spool);
  assert.ok(ids.length >= 16 && ids.length <= 32, `${ids.length}`);
  assert.deepEqual(
    ids.slice(-16),
    Array.from({ length: 16 }, (_, i) => `e${i + 16}`),
  );
  await spool.close();
});
