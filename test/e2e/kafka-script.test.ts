import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { freePort, REPO_ROOT } from "@merch/testkit";
import { Kafka, logLevel } from "kafkajs";

// `npm run kafka` as the README shows it (issue 22.5): the broker it starts is where the README's
// one line points `npm start`, the store's log events land there, and Ctrl-C (SIGINT to the
// terminal's process group) or SIGTERM removes the broker's temporary data folder.

const readme = (await import("node:fs")).readFileSync(join(REPO_ROOT, "README.md"), "utf8");
const started: ChildProcess[] = [];
// A test that failed midway leaves its processes running: SIGTERM first, so npm run kafka removes
// its folder as it would on Ctrl-C, and SIGKILL only what is still there 30 s later.
after(async () => {
  const signal = (child: ChildProcess, name: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null || !child.pid) return;
    try {
      process.kill(-child.pid, name);
    } catch {
      // The group has gone meanwhile.
    }
  };
  for (const child of started) signal(child, "SIGTERM");
  const deadline = Date.now() + 30_000;
  while (started.some((c) => c.exitCode === null && c.signalCode === null) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const child of started) signal(child, "SIGKILL");
});

interface Running {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** Runs a README command line through sh, in a process group of its own, as a terminal would. */
function shell(line: string, env: Record<string, string> = {}): Running {
  const child = spawn("sh", ["-c", line], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  started.push(child);
  let output = "";
  child.stdout?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, output: () => output, exited };
}

async function until(what: string, run: Running, pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = run.output().match(pattern);
    if (m) return m;
    if (Date.now() > deadline || run.child.exitCode !== null) assert.fail(`${what}:\n${run.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Ctrl-C: SIGINT (or another signal) to the whole group, as a terminal sends it; waits for the end. */
async function stop(run: Running, signal: NodeJS.Signals): Promise<void> {
  if (run.child.pid) process.kill(-run.child.pid, signal);
  await Promise.race([
    run.exited,
    new Promise<never>((_, fail) => setTimeout(() => fail(new Error(`not stopped 60 s after ${signal}`)), 60_000)),
  ]);
}

/** The folder is gone once every process of the group has finished with it (npm may go first). */
async function removed(folder: string, after: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (existsSync(folder)) {
    assert.ok(Date.now() < deadline, `${folder} is left 60 s after ${after}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const dataFolder = async (run: Running) =>
  (await until("the data folder", run, /[Dd]ata and broker\.log in (\S+?)(?: \(|\n)/, 180_000))[1] ?? "";

test("npm start on the README's KAFKA_BROKERS line logs to npm run kafka's broker; Ctrl-C removes the broker's data", {
  timeout: 400_000,
}, async () => {
  const kafkaLine = readme.match(/`(npm run kafka -- --port )9092`/)?.[1];
  const startLine = readme.match(/`KAFKA_BROKERS=127\.0\.0\.1:9092 (npm start)`/)?.[1];
  assert.ok(
    kafkaLine && startLine,
    "README shows npm run kafka -- --port 9092 and KAFKA_BROKERS=127.0.0.1:9092 npm start",
  );
  const port = await freePort();
  const kafka = shell(`${kafkaLine}${port}`);
  const [, brokers] = await until("npm run kafka prints KAFKA_BROKERS", kafka, /^KAFKA_BROKERS=(\S+)$/m, 180_000);
  assert.equal(brokers, `127.0.0.1:${port}`);
  const folder = await dataFolder(kafka);
  assert.ok(existsSync(folder));

  const dataDir = mkdtempSync(join(tmpdir(), "merch-kafka-start-"));
  try {
    const [gateway, db, log, pg] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const store = shell(`KAFKA_BROKERS=${brokers} ${startLine}`, {
      DATA_DIR: dataDir,
      GATEWAY_PORT: String(gateway),
      DB_SERVICE_PORT: String(db),
      LOG_SERVICE_PORT: String(log),
      PG_PORT: String(pg),
      LOG_FORMAT: "json",
    });
    await until("npm start gets ready", store, /The SUSTech Merch Store is ready\./, 120_000);
    const res = await fetch(`http://127.0.0.1:${gateway}/products/1`, { signal: AbortSignal.timeout(10_000) });
    assert.equal(res.status, 200);

    // The store's events are on the broker's log-channel.
    const client = new Kafka({ brokers: [brokers], clientId: "kafka-script-test", logLevel: logLevel.NOTHING });
    const consumer = client.consumer({ groupId: `kafka-script-test-${port}` });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic: "log-channel", fromBeginning: true });
      const first = new Promise<string>((resolve) => {
        void consumer.run({ eachMessage: async ({ message }) => resolve(message.value?.toString() ?? "") });
      });
      const record = await Promise.race([
        first,
        new Promise<never>((_, fail) => setTimeout(() => fail(new Error("no record on log-channel in 60 s")), 60_000)),
      ]);
      assert.ok(JSON.parse(record), record);
    } finally {
      await consumer.disconnect();
    }
    await stop(store, "SIGINT");
    assert.match(store.output(), /Stopped\./);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }

  await stop(kafka, "SIGINT");
  await removed(folder, "Ctrl-C");
});

test("SIGTERM stops npm run kafka and removes its data folder too", { timeout: 300_000 }, async () => {
  const kafka = shell("npm run kafka");
  await until("npm run kafka prints KAFKA_BROKERS", kafka, /^KAFKA_BROKERS=\S+$/m, 180_000);
  const folder = await dataFolder(kafka);
  assert.ok(existsSync(join(folder, "broker.log")));
  await stop(kafka, "SIGTERM");
  await removed(folder, "SIGTERM");
});
