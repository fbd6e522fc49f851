import assert from "node:assert/strict";
import { test } from "node:test";
import { Supervisor } from "./supervisor.ts";

// The supervisor of `npm start` with stand-in processes: one that dies as soon as it starts, one
// that stays up. The first is restarted for ever at a growing, capped delay and reported loudly;
// the second is never touched, and nothing stops.

/** A process that ends when told to, or at once after each start when `crashes`. */
function process(name: string, crashes: boolean) {
  let end: () => void = () => {};
  let ended = Promise.resolve();
  const starts: number[] = [];
  const start = () => {
    starts.push(performance.now());
    ended = new Promise<void>((resolve) => {
      end = resolve;
    });
    if (crashes) setImmediate(() => end());
  };
  start();
  return { name, starts, exited: () => ended, restart: start };
}

test("a process that keeps failing is restarted with a growing, capped delay while the others keep running", async () => {
  const lines: string[] = [];
  const failing: number[] = [];
  const supervisor = new Supervisor({
    minDelayMs: 10,
    maxDelayMs: 80,
    maxRestarts: 3,
    windowMs: 60_000,
    log: (m) => lines.push(m),
    onFailing: (_name, recent) => failing.push(recent),
  });
  const crashing = process("gateway", true);
  const steady = process("db-service", false);
  supervisor.watch(crashing);
  supervisor.watch(steady);
  const deadline = performance.now() + 20_000;
  while (crashing.starts.length < 10) {
    assert.ok(performance.now() < deadline, `only ${crashing.starts.length} starts in 20 s:\n${lines.join("\n")}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  supervisor.stop();
  const gaps = crashing.starts.slice(1).map((t, i) => t - (crashing.starts[i] ?? t));
  // Delays of 10, 20, 40, then 80 ms for ever (timers fire no earlier than asked).
  const expected = [10, 20, 40, 80, 80, 80, 80, 80, 80];
  for (const [i, gap] of gaps.entries()) assert.ok(gap >= (expected[i] ?? 80) - 1, `restart ${i + 1} after ${gap} ms`);
  assert.ok(
    gaps.slice(3).every((gap) => gap < 80 * 4),
    `the delay is capped: ${gaps.map(Math.round).join(", ")}`,
  );
  assert.equal(steady.starts.length, 1, "the steady process was never restarted");
  assert.deepEqual(supervisor.restarts, { gateway: 9, "db-service": 0 });
  // From the fourth restart in the window on, each is reported loudly; nothing gave up.
  assert.deepEqual(failing, [4, 5, 6, 7, 8, 9, 10].slice(0, failing.length));
  assert.ok(failing.length >= 6, lines.join("\n"));
  assert.ok(
    lines.some((l) => /gateway KEEPS FAILING.*rest of the store keeps serving/.test(l)),
    lines.join("\n"),
  );
  assert.ok(!lines.some((l) => /giving up/.test(l)));
});
