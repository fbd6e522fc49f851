import assert from "node:assert/strict";
import { test } from "node:test";
import { pino } from "pino";
import { HealthRegistry } from "./health.ts";
import type { Logger } from "./logger.ts";

/** A logger that keeps what it logs, as [level, health, message]. */
function recordingLogger(): { logger: Logger; lines: [string, unknown, string][] } {
  const lines: [string, unknown, string][] = [];
  const logger = pino(
    { level: "debug" },
    {
      write(line: string) {
        const { level, health, msg } = JSON.parse(line) as { level: number; health: unknown; msg: string };
        lines.push([pino.levels.labels[level] ?? String(level), health, msg]);
      },
    },
  );
  return { logger, lines };
}

test("follow sets every service from the condition and logs each change once", () => {
  const health = new HealthRegistry(["a.v1.A", "b.v1.B"]);
  const { logger, lines } = recordingLogger();
  const shutdown = new AbortController();
  let up = true;
  const update = health.follow(() => up, { logger, signal: shutdown.signal });
  assert.equal(health.get(), "SERVING", "set at once");
  assert.equal(health.get("b.v1.B"), "SERVING");
  update();
  up = false;
  update();
  update();
  assert.equal(health.get("a.v1.A"), "NOT_SERVING");
  up = true;
  update();
  assert.deepEqual(lines, [
    ["info", "SERVING", "health changed"],
    ["warn", "NOT_SERVING", "health changed"],
    ["info", "SERVING", "health changed"],
  ]);

  // Shutting down: the server's NOT_SERVING stays, whatever the condition says.
  health.set("NOT_SERVING");
  shutdown.abort();
  update();
  assert.equal(health.get(), "NOT_SERVING");
  assert.equal(lines.length, 3);
});

test("follow also rechecks on its own until shutdown", async () => {
  const health = new HealthRegistry(["a.v1.A"]);
  const { logger } = recordingLogger();
  const shutdown = new AbortController();
  let up = false;
  health.follow(() => up, { logger, signal: shutdown.signal, recheckMs: 10 });
  assert.equal(health.get(), "NOT_SERVING");
  up = true;
  const deadline = Date.now() + 5000;
  while (health.get() !== "SERVING" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  assert.equal(health.get(), "SERVING", "an unreported change is picked up by the recheck");
  shutdown.abort();
  health.set("NOT_SERVING");
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(health.get(), "NOT_SERVING", "no recheck after shutdown");
});
