import assert from "node:assert/strict";
import { test } from "node:test";
import { raceAbort } from "./race.ts";

const refusal = () => new Error("gave up");
const pendingTimers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
const never = () => new Promise<never>(() => {});

test("settles with the work when it comes first, and leaves nothing armed", async () => {
  const controller = new AbortController();
  assert.equal(await raceAbort(Promise.resolve(7), controller.signal, refusal), 7);
  await assert.rejects(raceAbort(Promise.reject(new Error("own")), controller.signal, refusal), /own/);
  const timers = pendingTimers();
  assert.equal(await raceAbort(Promise.resolve("in time"), 60_000, refusal), "in time");
  assert.equal(pendingTimers(), timers, "the deadline's timer is cleared");
});

test("rejects with the refusal when the signal aborts first, or had already aborted", async () => {
  const controller = new AbortController();
  const raced = raceAbort(never(), controller.signal, refusal);
  controller.abort();
  await assert.rejects(raced, /gave up/);
  await assert.rejects(raceAbort(never(), AbortSignal.abort(), refusal), /gave up/);
});

test("rejects with the refusal when the deadline passes first", async () => {
  await assert.rejects(raceAbort(never(), 5, refusal), /gave up/);
});

test("work that fails after it was given up on causes no unhandled rejection", async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  try {
    let fail = (_: Error) => {};
    const work = new Promise<never>((_, reject) => {
      fail = reject;
    });
    await assert.rejects(raceAbort(work, AbortSignal.abort(), refusal), /gave up/);
    fail(new Error("late"));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(unhandled, []);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});
