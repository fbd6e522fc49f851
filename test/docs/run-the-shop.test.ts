import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { startTestStore, type TestStore } from "@merch/devstack";
import { REPO_ROOT } from "@merch/testkit";
import postgres from "postgres";

// README.md's "Run the shop" block, run as it is written, with bash, curl, jq, npm and buf,
// against a real store: only the ports and the data directory, which the block takes from the
// variables `npm start` reads, point at this store instead of `npm start`'s.

const run = promisify(execFile);

let store: TestStore;
let dataDir: string;
before(async () => {
  store = await startTestStore();
  // Where `npm start` keeps the credential, as the block reads it.
  dataDir = mkdtempSync(join(tmpdir(), "run-the-shop-"));
  writeFileSync(join(dataDir, "service-credential"), `${store.stack.serviceCredential}\n`, { mode: 0o600 });
});
after(async () => {
  await store?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

function block(): string {
  const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
  const start = readme.indexOf("## Run the shop\n");
  assert.ok(start >= 0, "README.md has a Run the shop section");
  const rest = readme.slice(start);
  const code = /```sh\n([\s\S]*?)```/.exec(rest.slice(0, rest.indexOf("\n## ", 1)));
  assert.ok(code?.[1], "the section has a sh block");
  return code[1];
}

test("README's Run the shop commands make a staff account, a product, a restock and a hand-over", {
  timeout: 180_000,
}, async () => {
  const { stdout } = await run("bash", ["-euo", "pipefail", "-c", block()], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      GATEWAY_PORT: new URL(store.url).port,
      DB_SERVICE_PORT: new URL(store.stack.services["db-service"].url).port,
      DATA_DIR: dataDir,
      // npm scripts find node on PATH: the one running this test.
      PATH: `${join(REPO_ROOT, "node_modules", ".bin")}:${process.env.PATH ?? ""}`,
    },
    timeout: 150_000,
  });
  assert.match(stdout, /desk is staff now/);
  assert.match(stdout.trim(), /collected$/);

  const sql = postgres(store.stack.databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const [desk] = await sql`SELECT role FROM users WHERE username = 'desk'`;
    assert.equal(desk?.role, "staff");
    const [cap] = await sql`SELECT price, stock FROM products WHERE name = 'SUSTech Cap'`;
    assert.deepEqual({ ...cap }, { price: "14.50", stock: 39 });
    const [order] = await sql`SELECT o.status, o.unit_price FROM orders o JOIN users u ON u.id = o.user_id
                              WHERE u.username = 'alice'`;
    assert.deepEqual({ ...order }, { status: "collected", unit_price: "14.50" });
    const [adjusted] = await sql`SELECT delta, reason FROM stock_adjustments`;
    assert.deepEqual({ ...adjusted }, { delta: 40, reason: "delivery" });
  } finally {
    await sql.end();
  }
});
