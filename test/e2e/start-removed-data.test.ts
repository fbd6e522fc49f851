import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { freePort } from "@merch/testkit";
import { type NpmStart, npmStart, type StartPorts, signalGroup } from "./npm-start.ts";

// Removing DATA_DIR removes the store's data, wherever npm start had to keep it. As root with a
// private (0700) DATA_DIR, PostgreSQL runs as `postgres`, who cannot enter it, so the cluster lives
// under /var/lib/merch-store: it must not come back (with its users) after `rm -rf "$DATA_DIR"`.
// As another user the cluster is inside DATA_DIR, and the same holds.

// mkdtemp makes it 0700: private, as a clone in /root is.
const dataDir = mkdtempSync(join(tmpdir(), "merch-removed-"));
const outsideHomes = new Set<string>();
after(() => {
  rmSync(dataDir, { recursive: true, force: true });
  for (const home of outsideHomes) rmSync(home, { recursive: true, force: true });
});

/** Starts the store, waits until it is ready (120 s at most), and returns where its cluster is. */
async function startReady(ports: StartPorts) {
  const store = npmStart(dataDir, ports);
  const deadline = Date.now() + 120_000;
  while (!store.output().includes("The SUSTech Merch Store is ready.")) {
    assert.equal(store.child.exitCode, null, `npm start exited:\n${store.output().slice(-6000)}`);
    assert.ok(Date.now() < deadline, `npm start was not ready in 120 s:\n${store.output().slice(-6000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const cluster = store.output().match(/PostgreSQL +\S+ \(embedded, data in (\S+)\)/)?.[1];
  assert.ok(cluster, `the banner names the cluster:\n${store.output()}`);
  return { ...store, cluster };
}

async function stop(store: NpmStart): Promise<void> {
  signalGroup(store.child, "SIGINT");
  assert.equal(await store.exited, 0);
}

const account = { sid: "R1", username: "removed", email: "r@example.com", password: "gone with the data" };

async function post(base: string, path: string, body: unknown): Promise<Response> {
  return fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

test("rm -rf DATA_DIR (0700, as whoever runs the tests: root in CI) removes the store's data: its users do not come back", async () => {
  assert.equal(statSync(dataDir).mode & 0o777, 0o700);
  const ports = { gateway: await freePort(), db: await freePort(), log: await freePort(), pg: await freePort() };
  const base = `http://127.0.0.1:${ports.gateway}`;
  const root = userInfo().uid === 0;

  const first = await startReady(ports);
  const firstId = readFileSync(join(dataDir, "store-id"), "utf8").trim();
  if (root) {
    // postgres cannot enter a 0700 DATA_DIR: the banner says where the data is, and why.
    assert.match(first.cluster, /^\/var\/lib\/merch-store\/[0-9a-f]{16}\/pg$/);
    outsideHomes.add(dirname(first.cluster));
    assert.match(
      first.output(),
      /Outside DATA_DIR: PostgreSQL runs as the unprivileged `postgres` user, who cannot enter a private directory/,
    );
    assert.equal(readFileSync(join(dirname(first.cluster), "identity"), "utf8").trim(), firstId);
  } else {
    assert.equal(first.cluster, join(dataDir, "pg"));
  }
  const reg = await post(base, "/users/register", account);
  assert.equal(reg.status, 201, await reg.text());
  assert.equal(
    (await post(base, "/users/login", { username: account.username, password: account.password })).status,
    200,
  );
  await stop(first);

  rmSync(dataDir, { recursive: true, force: true });

  const second = await startReady(ports);
  try {
    assert.equal(second.cluster, first.cluster, "the same DATA_DIR path gets the same place");
    const secondId = readFileSync(join(dataDir, "store-id"), "utf8").trim();
    assert.notEqual(secondId, firstId, "a removed DATA_DIR is a new store");
    if (root) {
      assert.match(second.output(), /A cluster left there by a removed DATA_DIR was wiped at this start/);
      assert.equal(readFileSync(join(dirname(second.cluster), "identity"), "utf8").trim(), secondId);
      // One cluster, this store's; nothing of the old one beside it.
      assert.deepEqual(readdirSync(dirname(second.cluster)).sort(), ["identity", "pg", "pg-password", "postgres.log"]);
    }
    const login = await post(base, "/users/login", { username: account.username, password: account.password });
    assert.equal(login.status, 401, "the removed store's user does not log in");
    const again = await post(base, "/users/register", account);
    assert.equal(again.status, 201, `the name is free again: ${await again.text()}`);
  } finally {
    await stop(second);
  }

  // A restart with DATA_DIR kept keeps the data (the identity matches).
  const third = await startReady(ports);
  try {
    assert.doesNotMatch(third.output(), /was wiped/);
    const login = await post(base, "/users/login", { username: account.username, password: account.password });
    assert.equal(login.status, 200, "a kept DATA_DIR keeps its users");
  } finally {
    await stop(third);
  }
  assert.ok(existsSync(join(dataDir, "store-id")));

  if (!root) return;
  // A DATA_DIR and outside cluster from before identities (neither has one): the cluster is kept.
  rmSync(join(dataDir, "store-id"));
  rmSync(join(dirname(first.cluster), "identity"));
  const older = await startReady(ports);
  try {
    assert.doesNotMatch(older.output(), /was wiped/);
    const login = await post(base, "/users/login", { username: account.username, password: account.password });
    assert.equal(login.status, 200, "an older DATA_DIR keeps its users");
    const id = readFileSync(join(dataDir, "store-id"), "utf8").trim();
    assert.equal(readFileSync(join(dirname(older.cluster), "identity"), "utf8").trim(), id);
  } finally {
    await stop(older);
  }
});
