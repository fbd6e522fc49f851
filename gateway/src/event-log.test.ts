import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, type TestContext, test } from "node:test";
import { createLogger } from "@merch/kit";
import { freePort, readLogFile, runService, type ServiceProcess } from "@merch/testkit";
import { type Downstream, type LogClients, logClients, networkDownstream } from "./clients.ts";
import { loadConfig } from "./config.ts";
import { EventLog } from "./event-log.ts";

// The gateway's log pipeline against a real log-service process (file sink, so each test can
// read exactly what was published).

const CREDENTIAL = "event-log-test-credential-0123456789abcdef";
let dir: string;
let service: ServiceProcess;
let clients: LogClients;
let downstream: Downstream;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), "merch-eventlog-"));
  chmodSync(dir, 0o755);
  const port = await freePort();
  service = runService("log-service", port, { DATA_DIR: dir, SERVICE_CREDENTIAL: CREDENTIAL }, "capture");
  downstream = networkDownstream(loadConfig({ LOG_SERVICE_URL: service.url, SERVICE_CREDENTIAL: CREDENTIAL }));
  clients = logClients(downstream.log);
  await waitServing();
});
after(async () => {
  downstream?.close();
  await service?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function waitServing(): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      await clients.health.check({ service: "" }, { timeoutMs: 500 });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`log-service did not start:\n${service.output()}`);
}

/** An EventLog that is closed when the test ends, pass or fail: a live one keeps the file running. */
function eventLog(t: TestContext, opts: ConstructorParameters<typeof EventLog>[2]): EventLog {
  const log = new EventLog(clients.logs, createLogger("gateway", "silent"), opts);
  t.after(() => log.close(1000));
  return log;
}

function published() {
  return readLogFile(join(dir, "log-channel.jsonl")).map((r) => r.record);
}

async function until(condition: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("events sent across a log-service restart all arrive, none twice", async (t) => {
  const log = eventLog(t, { maxEvents: 10_000, ackAfterMs: 200 });
  const run = `restart-${Date.now()}`;
  let sent = 0;
  const emit = () => log.emit({ level: "info", event: run, message: String(sent++) });
  for (let i = 0; i < 50; i++) emit();
  await service.stop();
  for (let i = 0; i < 50; i++) emit(); // while log-service is down
  assert.ok(log.stats().queued + log.stats().in_flight > 0);
  service.start();
  await waitServing();
  for (let i = 0; i < 50; i++) emit();
  await until(() => published().filter((e) => e.event === run).length >= 150, "150 events");
  await log.close(5000);
  const mine = published().filter((e) => e.event === run);
  assert.equal(mine.length, 150);
  assert.equal(new Set(mine.map((e) => e.id)).size, 150);
  assert.deepEqual(
    mine.map((e) => Number(e.message)).sort((a, b) => a - b),
    Array.from({ length: 150 }, (_, i) => i),
  );
  assert.ok(mine.every((e) => e.service === "gateway"));
  assert.equal(log.stats().dropped, 0);
});

test("while log-service is down the buffer is bounded; what does not fit is counted, the rest arrives", async (t) => {
  const log = eventLog(t, { maxEvents: 100, ackAfterMs: 200 });
  const run = `bounded-${Date.now()}`;
  await service.stop();
  for (let i = 0; i < 130; i++) log.emit({ level: "warn", event: run, message: String(i) });
  assert.equal(log.stats().dropped, 30);
  service.start();
  await waitServing();
  await until(() => published().filter((e) => e.event === run).length >= 100, "100 events");
  await log.close(5000);
  const mine = published().filter((e) => e.event === run);
  assert.equal(mine.length, 100);
  assert.deepEqual(
    mine.map((e) => Number(e.message)).sort((a, b) => a - b),
    Array.from({ length: 100 }, (_, i) => i),
  );
});

test("attributes that look like secrets never leave the gateway", async (t) => {
  const log = eventLog(t, { maxEvents: 100, ackAfterMs: 100 });
  const run = `secret-${Date.now()}`;
  log.emit({
    level: "info",
    event: run,
    message: "m",
    attributes: {
      password: "hunter2hunter2",
      access_token: "abc.def.ghi",
      Authorization: "Bearer x",
      apikey: "k3y-apikey",
      "api-key": "k3y-dash",
      passphrase: "k3y-phrase",
      order_id: "7",
    },
  });
  await until(() => published().some((e) => e.event === run), "the event");
  await log.close(5000);
  const line = JSON.stringify(published().find((e) => e.event === run));
  assert.ok(!/hunter2|abc\.def|Bearer|k3y-/.test(line), line);
  assert.match(line, /"order_id":"7"/);
});
