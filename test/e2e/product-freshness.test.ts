import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { MIGRATIONS_DIR, migrate } from "@merch/db-service";
import { requireCommand, startTestStore, TEST_JWT_SECRET, type TestStore } from "@merch/devstack";
import { freePort, REPO_ROOT, runService, type ServiceProcess } from "@merch/testkit";
import postgres from "postgres";
import { waitForReady } from "./trust-support.ts";

// Product pages follow every change to products, however it was made (issue 22.1), with the
// store running and two gateways on one db-service:
// - gateway A keeps its copy for 60 s (PRODUCT_CACHE_TTL_MS), so whatever it shows sooner came
//   through db-service's WatchProducts stream: an UPDATE from psql, a TRUNCATE, `npm run
//   db:reset -- --yes` and a migration are all announced;
// - gateway B has the default TTL of 1 s, the bound for a change no trigger announces (a restore
//   with triggers disabled): it reads the catalogue again before its copy is 1 s old.
// Each wait has a 5 s deadline; how long each change took is reported, not asserted.

const run = promisify(execFile);
let store: TestStore;
let gatewayB: ServiceProcess | undefined;
let urlA: string;
let urlB: string;
let sql: postgres.Sql;

before(async () => {
  await requireCommand("psql", "postgresql-client");
  store = await startTestStore({ serviceEnv: { gateway: { PRODUCT_CACHE_TTL_MS: "60000" } } });
  urlA = store.url;
  gatewayB = runService(
    "gateway",
    await freePort(),
    {
      DB_SERVICE_URL: store.stack.services["db-service"].url,
      LOG_SERVICE_URL: store.stack.services["log-service"].url,
      JWT_SECRET: TEST_JWT_SECRET,
      SERVICE_CREDENTIAL: store.stack.serviceCredential,
      PRODUCT_CACHE_TTL_MS: "1000",
      SHUTDOWN_GRACE_MS: "1000",
    },
    "capture",
  );
  urlB = gatewayB.url;
  await waitForReady(urlB, gatewayB);
  sql = postgres(store.stack.databaseUrl, { max: 1, onnotice: () => {} });
});
after(async () => {
  await sql?.end();
  await gatewayB?.stop();
  await store?.stop();
});

/** id → stock, as a gateway's GET /products shows it. */
async function pageOf(base: string): Promise<Map<number, number>> {
  const res = await fetch(`${base}/products`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(res.status, 200);
  return new Map(((await res.json()) as { id: number; stock: number }[]).map((p) => [p.id, p.stock]));
}

/** id → stock in the database. */
async function database(): Promise<Map<number, number>> {
  const rows = await sql<{ id: number; stock: number }[]>`SELECT id, stock FROM products ORDER BY id`;
  return new Map(rows.map((r) => [r.id, r.stock]));
}

/** Waits until each gateway's page is the database's catalogue; the time each took, in ms. */
async function bothShowTheDatabase(what: string, gateways = [urlA, urlB]): Promise<string> {
  const want = [...(await database()).entries()];
  const started = performance.now();
  const took: string[] = [];
  for (const base of gateways) {
    const deadline = Date.now() + 5000;
    let seen = [...(await pageOf(base)).entries()];
    while (JSON.stringify(seen) !== JSON.stringify(want)) {
      assert.ok(
        Date.now() < deadline,
        `${what}: ${base === urlA ? "gateway A" : "gateway B"} shows ${JSON.stringify(seen)}, the database ${JSON.stringify(want)}, after 5 s`,
      );
      await new Promise((r) => setTimeout(r, 10));
      seen = [...(await pageOf(base)).entries()];
    }
    took.push(`${base === urlA ? "A" : "B"} ${(performance.now() - started).toFixed(0)} ms`);
  }
  return `${what}: ${took.join(", ")}`;
}

async function psql(command: string): Promise<void> {
  // As an operator runs it: npm run db:psql -- -c '...', with DATABASE_URL.
  await run(process.execPath, [join(REPO_ROOT, "scripts", "db-psql.ts"), "-c", command], {
    cwd: REPO_ROOT,
    env: { ...process.env, DATABASE_URL: store.stack.databaseUrl },
    timeout: 30_000,
  });
}

test("an UPDATE from psql, a TRUNCATE, db:reset and a migration reach every gateway; an unannounced change reaches it within the TTL", async (t) => {
  // Both gateways have the catalogue.
  t.diagnostic(await bothShowTheDatabase("start"));

  await psql("UPDATE products SET stock = 497 WHERE id = 2");
  assert.equal((await database()).get(2), 497);
  t.diagnostic(await bothShowTheDatabase("UPDATE from psql"));

  const { stdout } = await run(process.execPath, [join(REPO_ROOT, "scripts", "db-reset.ts"), "--yes"], {
    cwd: REPO_ROOT,
    env: { ...process.env, DATABASE_URL: store.stack.databaseUrl },
    timeout: 60_000,
  });
  assert.match(stdout, /db:reset: done/);
  assert.equal((await database()).get(2), 500);
  t.diagnostic(await bothShowTheDatabase("npm run db:reset -- --yes"));

  await psql("TRUNCATE products CASCADE");
  assert.equal((await database()).size, 0);
  t.diagnostic(await bothShowTheDatabase("TRUNCATE"));
  await sql`INSERT INTO products (id, name, category, price, stock) VALUES
    (1, 'One', 'Test', 1, 10), (2, 'Two', 'Test', 2, 20), (3, 'Three', 'Test', 3, 30)`;
  t.diagnostic(await bothShowTheDatabase("INSERT"));

  // A migration that rewrites products without an UPDATE the triggers hear (a backfill with the
  // triggers off), applied as db:migrate and db-service's start-up apply them.
  const folder = await mkdtemp(join(tmpdir(), "merch-migrations-"));
  t.after(() => rm(folder, { recursive: true, force: true }));
  await cp(MIGRATIONS_DIR, folder, { recursive: true });
  const journalPath = join(folder, "meta", "_journal.json");
  const journal = JSON.parse(await readFile(journalPath, "utf8")) as {
    entries: { idx: number; version: string; when: number; tag: string; breakpoints: boolean }[];
  };
  const last = journal.entries.at(-1);
  assert.ok(last);
  const tag = `${String(last.idx + 1).padStart(4, "0")}_backfill_stock`;
  journal.entries.push({ ...last, idx: last.idx + 1, when: last.when + 1, tag });
  await writeFile(journalPath, JSON.stringify(journal));
  await writeFile(
    join(folder, `${tag}.sql`),
    [
      `ALTER TABLE "products" DISABLE TRIGGER USER;`,
      `UPDATE "products" SET "stock" = "stock" * 2;`,
      `ALTER TABLE "products" ENABLE TRIGGER USER;`,
    ].join("--> statement-breakpoint\n"),
  );
  assert.deepEqual((await migrate(store.stack.databaseUrl, folder)).applied, [tag]);
  assert.equal((await database()).get(2), 40);
  t.diagnostic(await bothShowTheDatabase("a migration"));

  // What a restore with triggers disabled does: nothing is announced. Gateway B's TTL bounds it.
  await sql.begin(async (tx) => {
    await tx`SET LOCAL session_replication_role = replica`;
    await tx`UPDATE products SET stock = 123 WHERE id = 2`;
  });
  t.diagnostic(await bothShowTheDatabase("a restore-like change, no trigger fired (gateway B, TTL 1 s)", [urlB]));
  const a = await pageOf(urlA);
  // Gateway A's bound is its TTL, 60 s: it may still show 40 or already 123, never anything else.
  assert.ok([40, 123].includes(a.get(2) ?? -1), `gateway A shows ${a.get(2)}`);
});
