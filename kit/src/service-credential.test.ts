import assert from "node:assert/strict";
import { test } from "node:test";
import { pino } from "pino";
import type { Logger } from "./logger.ts";
import { RefusalLog } from "./service-credential.ts";

function recordingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { logger, lines };
}

test("6,000 refused calls cost a bounded number of lines, each naming the caller's address", () => {
  const { logger, lines } = recordingLogger();
  const log = new RefusalLog(logger, { intervalMs: 60_000, detailed: 10 });
  for (let i = 0; i < 6000; i++) {
    log.refused(
      `10.0.0.${i % 3}`,
      i % 2 === 0 ? "merch.store.v1.UserService/GetUser" : "merch.log.v1.LogService/WriteLogs",
      "missing",
      "curl",
    );
  }
  // Three addresses × two procedures: six distinct refusals, each logged once in full.
  assert.equal(lines.length, 6);
  for (const line of lines) {
    assert.equal(line.msg, "refused a call without the service credential");
    assert.match(String(line.address), /^10\.0\.0\.[0-2]$/);
  }
  log.flush();
  assert.equal(lines.length, 7);
  const summary = lines[6] as { msg: string; refused: number; byAddress: Record<string, number> };
  assert.equal(summary.msg, "refused calls without the service credential");
  assert.equal(summary.refused, 6000);
  assert.deepEqual(summary.byAddress, { "10.0.0.0": 2000, "10.0.0.1": 2000, "10.0.0.2": 2000 });

  // Many addresses: at most `detailed` full lines per interval, whatever the crowd.
  for (let i = 0; i < 1000; i++) log.refused(`10.1.${i >> 8}.${i & 255}`, "x/Y", "wrong", undefined);
  assert.equal(lines.length, 7 + 10);
  log.flush();
  const second = lines.at(-1) as { refused: number; addresses: number; byAddress: Record<string, number> };
  assert.equal(second.refused, 1000);
  assert.equal(second.addresses, 1000);
  assert.equal(Object.keys(second.byAddress).length, 20, "the summary names the busiest 20");
  log.flush();
  assert.equal(lines.length, 7 + 10 + 1, "an interval without refusals logs nothing");
});
