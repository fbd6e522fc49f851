import assert from "node:assert/strict";
import { chmodSync, existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { freePort } from "@merch/testkit";
import { npmStart, signalGroup } from "./npm-start.ts";

// Ctrl-C while the first `npm start` is still making its database (initdb), then `npm start`
// again: the store comes up on that data directory, and no secret was ever left readable by
// anyone but its owner, in the data directory or in the temp directory.

const dataDir = mkdtempSync(join(tmpdir(), "merch-interrupted-"));
chmodSync(dataDir, 0o755);
after(() => rmSync(dataDir, { recursive: true, force: true }));

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
  const first = npmStart(dataDir, ports);
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
  signalGroup(first.child, "SIGINT");
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

  const second = npmStart(dataDir, ports);
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
  signalGroup(second.child, "SIGINT");
  await second.exited;
  const tempAdded = readdirSync(tmpdir()).filter((n) => !tempBefore.has(n) && /^merch-pw-/.test(n));
  assert.deepEqual(tempAdded, [], "no password file in the temp directory");
});
