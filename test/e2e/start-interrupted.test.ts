import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { freePort, REPO_ROOT } from "@merch/testkit";

// Ctrl-C while the first `npm start` is still making its database (initdb), then `npm start`
// again: the store comes up on that data directory, and no secret was ever left readable by
// anyone but its owner, in the data directory or in the temp directory.

const dataDir = mkdtempSync(join(tmpdir(), "merch-interrupted-"));
chmodSync(dataDir, 0o755);
after(() => rmSync(dataDir, { recursive: true, force: true }));

function npmStart(ports: Record<"gateway" | "db" | "log" | "pg", number>) {
  // In a process group of its own, as a terminal runs it: Ctrl-C reaches every process in it.
  const child = spawn(process.execPath, [join(REPO_ROOT, "scripts", "start.ts")], {
    cwd: REPO_ROOT,
    detached: true,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "",
      DATA_DIR: dataDir,
      GATEWAY_PORT: String(ports.gateway),
      DB_SERVICE_PORT: String(ports.db),
      LOG_SERVICE_PORT: String(ports.log),
      PG_PORT: String(ports.pg),
      LOG_FORMAT: "json",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    output += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  process.once("exit", () => ctrlC(child, "SIGKILL"));
  return { child, exited, output: () => output };
}

function ctrlC(child: ChildProcess, signal: NodeJS.Signals = "SIGINT"): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

async function until(what: string, condition: () => boolean, timeoutMs: number, output = () => ""): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}:\n${output().slice(-6000)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Every file under `dir` that anyone but its owner may read. */
function readableByOthers(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const stat = lstatSync(path);
    if (stat.isDirectory()) out.push(...readableByOthers(path));
    else if (stat.isFile() && (stat.mode & 0o044) !== 0) out.push(`${path} ${(stat.mode & 0o777).toString(8)}`);
  }
  return out;
}

/** The live processes (zombies have no command line) whose command line names `dir`. */
function processesUsing(dir: string): string[] {
  const out: string[] = [];
  for (const pid of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
      if (cmdline.includes(dir)) out.push(`${pid} ${cmdline}`);
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

const tempBefore = new Set(readdirSync(tmpdir()));

test("Ctrl-C during the first start's initdb, then npm start again: the store comes up, no secret was readable", async () => {
  const ports = { gateway: await freePort(), db: await freePort(), log: await freePort(), pg: await freePort() };
  const first = npmStart(ports);
  // initdb is under way once the cluster being made has its PG_VERSION.
  const staging = () => readdirSync(dataDir).find((n) => n.startsWith("pg.init-") && !n.endsWith(".pw"));
  await until(
    "initdb to be under way",
    () => {
      const s = staging();
      return s !== undefined && existsSync(join(dataDir, s, "PG_VERSION"));
    },
    60_000,
  );
  ctrlC(first.child);
  await first.exited;
  // Nothing of the interrupted start goes on behind it: an initdb left running would keep writing
  // into the directory the next start removes (it once made that start fail).
  await until(
    "no process of the interrupted start to be left",
    () => processesUsing(dataDir).length === 0,
    2_000,
    () => processesUsing(dataDir).join("\n"),
  );
  assert.equal(readableByOthers(dataDir).join("\n"), "", "files others may read after the interruption");
  assert.ok(!existsSync(join(dataDir, "pg", "PG_VERSION")), "no cluster was left in place half-made");

  const second = npmStart(ports);
  await until(
    "the store to be ready",
    () => {
      assert.equal(second.child.exitCode, null, `npm start exited:\n${second.output().slice(-6000)}`);
      return second.output().includes("The SUSTech Merch Store is ready.");
    },
    120_000,
    second.output,
  );
  const base = `http://127.0.0.1:${ports.gateway}`;
  const account = { sid: "I1", username: "interrupted", email: "i@example.com", password: "start me again" };
  const reg = await fetch(`${base}/users/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(account),
  });
  assert.equal(reg.status, 201, await reg.text());
  assert.equal((await fetch(`${base}/readyz`)).status, 200);
  assert.deepEqual(
    readdirSync(dataDir).filter((n) => n.includes(".init-")),
    [],
    "the interrupted start's leftovers are gone",
  );
  assert.equal(readableByOthers(dataDir).join("\n"), "", "files others may read in the running store's data");
  ctrlC(second.child);
  await second.exited;
  const tempAdded = readdirSync(tmpdir()).filter((n) => !tempBefore.has(n) && /^merch-pw-/.test(n));
  assert.deepEqual(tempAdded, [], "no password file in the temp directory");
});
