import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { REPO_ROOT } from "@merch/devstack/paths";
import { freePort } from "@merch/devstack/ports";

// `npm start` as a user runs it: one command, the whole store on embedded defaults, data kept
// between runs, Ctrl-C stops everything.

const dataDir = mkdtempSync(join(tmpdir(), "merch-start-"));
chmodSync(dataDir, 0o755);
after(() => rmSync(dataDir, { recursive: true, force: true }));

async function startStore(ports: { gateway: number; db: number; log: number; pg: number }) {
  const child = spawn(process.execPath, [join(REPO_ROOT, "scripts", "start.ts")], {
    cwd: REPO_ROOT,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "",
      DATA_DIR: dataDir,
      GATEWAY_PORT: String(ports.gateway),
      DB_SERVICE_PORT: String(ports.db),
      LOG_SERVICE_PORT: String(ports.log),
      PG_PORT: String(ports.pg),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (d: Buffer) => {
    output += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    output += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  process.once("exit", () => child.kill("SIGKILL"));
  const deadline = Date.now() + 90_000;
  while (!output.includes("The SUSTech Merch Store is ready.")) {
    if (Date.now() > deadline || child.exitCode !== null) assert.fail(`npm start did not get ready:\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, exited, output: () => output };
}

test("npm start runs the store, prints its URLs, keeps data between runs and stops on Ctrl-C", async () => {
  const ports = { gateway: await freePort(), db: await freePort(), log: await freePort(), pg: await freePort() };
  const base = `http://127.0.0.1:${ports.gateway}`;

  const first = await startStore(ports);
  assert.match(first.output(), new RegExp(`REST API\\s+http://127\\.0\\.0\\.1:${ports.gateway}`));
  assert.match(first.output(), /JWT_SECRET is not set/, "a loud warning about the development secret");
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

  const second = await startStore(ports);
  const login = await fetch(`${base}/users/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: account.username, password: account.password }),
  });
  assert.equal(login.status, 200, "the account survived the restart");
  second.child.kill("SIGTERM");
  assert.equal(await second.exited, 0);
});
