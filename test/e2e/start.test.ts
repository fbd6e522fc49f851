import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { freePort } from "@merch/testkit";
import { type NpmStart, npmStart, type StartPorts } from "./npm-start.ts";

// `npm start` as a user runs it: one command, the whole store on embedded defaults, data kept
// between runs, processes that die started again, internal ports on loopback only, secrets
// readable by their owner only, Ctrl-C stops everything.

const dataDir = mkdtempSync(join(tmpdir(), "merch-start-"));
chmodSync(dataDir, 0o755);
after(() => rmSync(dataDir, { recursive: true, force: true }));

/** npm start on this test's data directory, once it says the store is ready. */
async function startStore(ports: StartPorts, extraEnv: Record<string, string> = {}): Promise<NpmStart> {
  // Its log format as a person gets it unless the test asks for one.
  const store = npmStart(dataDir, ports, { LOG_FORMAT: undefined, ...extraEnv });
  const deadline = Date.now() + 90_000;
  while (!store.output().includes("The SUSTech Merch Store is ready.")) {
    if (Date.now() > deadline || store.child.exitCode !== null) {
      assert.fail(`npm start did not get ready:\n${store.output()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return store;
}

/** The local addresses the process listens on (TCP), read from /proc as `ss -ltnp` would. */
function listening(pid: number): string[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  const out: string[] = [];
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      const [local, state, inode] = [cols[1], cols[3], cols[9]];
      if (state !== "0A" || !local || !inode || !inodes.has(inode)) continue; // 0A: LISTEN
      const [hex, port] = local.split(":");
      const address =
        hex?.length === 8
          ? (hex.match(/../g) ?? [])
              .reverse()
              .map((b) => Number.parseInt(b, 16))
              .join(".")
          : hex === "00000000000000000000000000000000"
            ? "::"
            : `ipv6:${hex}`;
      out.push(`${address}:${Number.parseInt(port ?? "0", 16)}`);
    }
  }
  return out.sort();
}

function pidOn(port: number): number {
  const out = execFileSync("ss", ["-Hltnp", `sport = :${port}`], { encoding: "utf8" });
  const pid = /pid=(\d+)/.exec(out)?.[1];
  assert.ok(pid, `nothing listens on ${port}: ${out}`);
  return Number(pid);
}

test("npm start runs the store, prints its URLs, keeps data between runs and stops on Ctrl-C", async () => {
  const ports = { gateway: await freePort(), db: await freePort(), log: await freePort(), pg: await freePort() };
  const base = `http://127.0.0.1:${ports.gateway}`;

  const first = await startStore(ports);
  assert.match(first.output(), new RegExp(`REST API\\s+http://127\\.0\\.0\\.1:${ports.gateway}`));
  const products = (await (await fetch(`${base}/products`)).json()) as { name: string }[];
  assert.equal(products.length, 3);
  const account = { sid: "S1", username: "starter", email: "starter@example.com", password: "start me up!" };
  const reg = await fetch(`${base}/users/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(account),
  });
  assert.equal(reg.status, 201);
  assert.equal((await fetch(`${base}/readyz`)).status, 200);
  // The operator tools find the running store here.
  const state = JSON.parse(readFileSync(join(dataDir, "store.json"), "utf8")) as Record<string, string>;
  assert.equal(state.gatewayUrl, base);
  assert.match(state.databaseUrl ?? "", new RegExp(`^postgres://.+@127\\.0\\.0\\.1:${ports.pg}/merch$`));
  assert.doesNotMatch(state.databaseUrl ?? "", /merch-local/, "the embedded database has a password of its own");
  // Secrets and the state file (which holds the database password) are their owner's alone.
  for (const file of ["store.json", "service-credential", "jwt-secret", "log-channel.jsonl"]) {
    assert.equal(statSync(join(dataDir, file)).mode & 0o777, 0o600, file);
  }
  const credential = readFileSync(join(dataDir, "service-credential"), "utf8").trim();
  assert.ok(credential.length >= 32);
  // Only the gateway is reachable from other machines.
  // Each service's /metrics is on a loopback port of its own, never its public or RPC port.
  const metricsUrls = state.metricsUrls as unknown as Record<string, string>;
  const metricsAt = (name: string) => {
    const url = new URL(metricsUrls[name] ?? "");
    assert.equal(url.hostname, "127.0.0.1", `${name}'s metrics`);
    return `127.0.0.1:${url.port}`;
  };
  const sorted = (list: string[]) => [...list].sort();
  assert.deepEqual(sorted(listening(pidOn(ports.db))), sorted([`127.0.0.1:${ports.db}`, metricsAt("db-service")]));
  assert.deepEqual(sorted(listening(pidOn(ports.log))), sorted([`127.0.0.1:${ports.log}`, metricsAt("log-service")]));
  assert.deepEqual(listening(pidOn(ports.pg)), [`127.0.0.1:${ports.pg}`]);
  assert.deepEqual(sorted(listening(pidOn(ports.gateway))), sorted([`0.0.0.0:${ports.gateway}`, metricsAt("gateway")]));
  assert.equal((await fetch(`${base}/metrics`)).status, 404, "no /metrics on the public port");
  assert.equal((await fetch(metricsUrls.gateway ?? "")).status, 200);
  const login = await fetch(`${base}/users/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: account.username, password: account.password }),
  });
  const { token } = (await login.json()) as { token: string };

  // A service that dies is started again; so is PostgreSQL. (A request can still succeed for a
  // moment after the postmaster's SIGKILL, on a backend that has not yet noticed: so wait for the
  // supervisor's count, then for the store to answer.)
  process.kill(pidOn(ports.db), "SIGKILL");
  await untilRestarted("db-service", 1);
  await untilOk(`${base}/users/me`, token);
  process.kill(pidOn(ports.pg), "SIGKILL");
  await untilRestarted("postgres", 1);
  await untilOk(`${base}/users/me`, token);
  assert.deepEqual(restartCounts(), { "db-service": 1, "log-service": 0, gateway: 0, postgres: 1 });
  assert.match(first.output(), /\[npm start\] db-service ended unexpectedly \(SIGKILL\); restarting/);

  first.child.kill("SIGINT");
  assert.equal(await first.exited, 0);
  assert.match(first.output(), /Stopped\./);
  assert.ok(!existsSync(join(dataDir, "store.json")));
  for (const port of Object.values(ports)) {
    await assert.rejects(fetch(`http://127.0.0.1:${port}/`), `port ${port} still answers after Ctrl-C`);
  }
  // Without a broker, the log channel is a JSON Lines file in the data directory.
  const channel = join(dataDir, "log-channel.jsonl");
  assert.ok(existsSync(channel));
  assert.match(readFileSync(channel, "utf8"), /"event":"user.registered"/);

  // Not on a terminal, the services' own JSON lines come through as they are.
  const jsonLines = first
    .output()
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as { msg?: string; level?: number });
  assert.ok(
    jsonLines.some((l) => l.msg?.startsWith("listening") && l.level === 30),
    "no JSON log lines on a pipe",
  );

  // LOG_FORMAT=pretty (the default on a terminal): one readable line per event, named by service.
  const second = await startStore(ports, { LOG_FORMAT: "pretty" });
  // biome-ignore lint/suspicious/noControlCharactersInRegex: strips the colours pino-pretty adds
  const plain = second.output().replace(/\u001b\[[0-9;]*m/g, "");
  for (const name of ["db-service", "log-service", "gateway"]) {
    assert.match(plain, new RegExp(`^${name}\\s* \\[\\d\\d:\\d\\d:\\d\\d\\.\\d{3}\\] INFO: `, "m"), name);
  }
  assert.ok(!plain.split("\n").some((line) => line.startsWith('{"level"')), "pretty output holds raw JSON lines");
  const again = await fetch(`${base}/users/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: account.username, password: account.password }),
  });
  assert.equal(again.status, 200, "the account survived the restart");
  const me = await fetch(`${base}/users/me`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(me.status, 200, "so did the first run's token (its secret and session are kept)");
  second.child.kill("SIGTERM");
  assert.equal(await second.exited, 0);
});

function restartCounts(): Record<string, number> {
  return (JSON.parse(readFileSync(join(dataDir, "store.json"), "utf8")) as { restarts: Record<string, number> })
    .restarts;
}

/** Waits until npm start has counted `count` restarts of `name` in store.json. */
async function untilRestarted(name: string, count: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (restartCounts()[name] !== count) {
    assert.ok(
      Date.now() < deadline,
      `${name} was not restarted within ${timeoutMs} ms: ${JSON.stringify(restartCounts())}`,
    );
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits until the URL answers 200 with the token: the store has recovered. */
async function untilOk(url: string, token: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, {
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(2000),
      });
      if (res.status === 200) return;
      last = `${res.status} ${await res.text()}`;
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${url} did not recover within ${timeoutMs} ms: ${last}`);
}
