import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { chmodSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { freePort, REPO_ROOT } from "@merch/testkit";

// A new user's first `npm start`: from a private home directory (0700, as /root and most fresh
// servers' homes are), as root, and as an ordinary user. PostgreSQL refuses to run as root, so
// under root it runs as `postgres`, who cannot enter such a home.

const cleanups: (() => void)[] = [];
after(() => {
  for (const cleanup of cleanups.reverse()) cleanup();
});

/** `npm start` from `cwd`, by `user` (default: this process's), until /products answers; then Ctrl-C. */
async function startAndStop(cwd: string, home: string, user?: { uid: number; gid: number }): Promise<string> {
  const ports = { gateway: await freePort(), db: await freePort(), log: await freePort(), pg: await freePort() };
  const child = spawn(join(cwd, "node_modules", ".bin", "node"), [join(cwd, "scripts", "start.ts")], {
    cwd,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: home,
      GATEWAY_PORT: String(ports.gateway),
      DB_SERVICE_PORT: String(ports.db),
      LOG_SERVICE_PORT: String(ports.log),
      PG_PORT: String(ports.pg),
    },
    stdio: ["ignore", "pipe", "pipe"],
    ...user,
  });
  let output = "";
  child.stdout.on("data", (d: Buffer) => {
    output += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    output += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const kill = () => child.kill("SIGKILL");
  process.once("exit", kill);
  try {
    const deadline = Date.now() + 120_000;
    while (!output.includes("The SUSTech Merch Store is ready.")) {
      if (Date.now() > deadline || child.exitCode !== null) assert.fail(`npm start did not get ready:\n${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const products = (await (await fetch(`http://127.0.0.1:${ports.gateway}/products`)).json()) as unknown[];
    assert.equal(products.length, 3);
    child.kill("SIGINT");
    assert.equal(await exited, 0, output);
    return output;
  } finally {
    process.off("exit", kill);
    if (child.exitCode === null) kill();
  }
}

/** The checkout as a new user would have it: its files in their home, node_modules hard-linked. */
function copyCheckout(to: string, owner?: { uid: number; gid: number }): void {
  const files = execFileSync("git", ["ls-files", "-co", "--exclude-standard"], { cwd: REPO_ROOT, encoding: "utf8" })
    .split("\n")
    .filter((f) => f !== "");
  for (const file of files) {
    mkdirSync(dirname(join(to, file)), { recursive: true });
    try {
      copyFileSync(join(REPO_ROOT, file), join(to, file));
    } catch (err) {
      // A file deleted in the work tree but not yet in git's index.
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
  // The new user owns their checkout; node_modules stays shared (hard links share owners too).
  if (owner) execFileSync("chown", ["-R", `${owner.uid}:${owner.gid}`, to]);
  execFileSync("cp", ["-al", join(REPO_ROOT, "node_modules"), join(to, "node_modules")]);
}

test("from a private home directory, as whoever runs the tests (root in CI)", async () => {
  const home = mkdtempSync(join(tmpdir(), "merch-home-"));
  cleanups.push(() => rmSync(home, { recursive: true, force: true }));
  chmodSync(home, 0o700);
  const checkout = join(home, "store");
  copyCheckout(checkout);
  const output = await startAndStop(checkout, home);
  if (userInfo().uid !== 0) return;
  // Under root, PostgreSQL's data could not live in the checkout: it went where `postgres` can reach it.
  const where = /PostgreSQL\s+127\.0\.0\.1:\d+ \(embedded, data in (\/var\/lib\/merch-store\/[0-9a-f]+\/pg)\)/.exec(
    output,
  );
  assert.ok(where?.[1], output);
  cleanups.push(() => rmSync(dirname(where[1] as string), { recursive: true, force: true }));
});

test("as an ordinary user, in their own private home", async () => {
  // Not root: then the tests already run as an ordinary user, and the test above was this one.
  if (userInfo().uid !== 0) return;
  const name = "merchstore-test";
  try {
    execFileSync("id", ["-u", name], { stdio: "ignore" });
  } catch {
    execFileSync("useradd", ["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name]);
  }
  const uid = Number(execFileSync("id", ["-u", name], { encoding: "utf8" }).trim());
  const gid = Number(execFileSync("id", ["-g", name], { encoding: "utf8" }).trim());
  // Its home inside a directory only it can enter, as a fresh account's would be.
  const outer = mkdtempSync(join(tmpdir(), "merch-user-"));
  cleanups.push(() => rmSync(outer, { recursive: true, force: true }));
  chmodSync(outer, 0o755);
  const home = join(outer, name);
  mkdirSync(home, { mode: 0o700 });
  chownSync(home, uid, gid);
  const checkout = join(home, "store");
  copyCheckout(checkout, { uid, gid });
  const output = await startAndStop(checkout, home, { uid, gid });
  // Not root: PostgreSQL runs as this user, with its data in the checkout as usual.
  assert.match(output, new RegExp(`data in ${checkout.replaceAll("/", "\\/")}\\/\\.data\\/pg\\)`));
});
