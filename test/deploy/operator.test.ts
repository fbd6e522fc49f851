// The operator's tools, run as `npm run db:psql` / `db:reset` / `db:migrate` run them (node on
// the script, from the repository root), against a real PostgreSQL 17.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { migrate } from "@merch/db-service";
import { putProduct } from "@merch/db-service/test-support";
import { freePort, REPO_ROOT, startTestPostgres, type TestPostgres } from "@merch/testkit";
import postgres from "postgres";
import { read } from "./support.ts";

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

const RUN_DEADLINE_MS = 60_000;

/** Runs scripts/<script> with the environment given on top of a clean one (no DATABASE_URL, DATA_DIR). */
function run(script: string, args: string[], env: Record<string, string>): Promise<Run> {
  const { DATABASE_URL: _url, DATA_DIR: _dir, NODE_TEST_CONTEXT: _ctx, ...base } = process.env;
  const child = spawn(process.execPath, [join("scripts", script), ...args], {
    cwd: REPO_ROOT,
    env: { ...base, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  // A script that hangs is killed and shows as code null, with what it printed.
  const deadline = setTimeout(() => child.kill("SIGKILL"), RUN_DEADLINE_MS);
  return new Promise((resolve) =>
    child.on("close", (code) => {
      clearTimeout(deadline);
      resolve({ code, stdout, stderr });
    }),
  );
}

let pg: TestPostgres;
let sql: postgres.Sql;
let seeded: Snapshot;
const dirs: string[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "merch-operator-"));
  chmodSync(dir, 0o755);
  dirs.push(dir);
  return dir;
}

/** A store.json as `npm start` writes it, in a new DATA_DIR. */
function storeJson(databaseUrl: string, pid: number): string {
  const dataDir = tempDir();
  const state = {
    gatewayUrl: "http://127.0.0.1:8080",
    dbServiceUrl: "http://127.0.0.1:50051",
    logServiceUrl: "http://127.0.0.1:50052",
    databaseUrl,
    kafkaBrokers: null,
    pid,
  };
  writeFileSync(join(dataDir, "store.json"), `${JSON.stringify(state, null, 2)}\n`);
  return dataDir;
}

class Rollback extends Error {
  readonly ids: unknown[];
  constructor(ids: unknown[]) {
    super("rollback");
    this.ids = ids;
  }
}

interface Snapshot {
  counts: Record<string, number>;
  products: unknown[];
  schema: unknown[];
  triggers: unknown[];
  migrations: unknown[];
}

const TABLES = ["users", "products", "orders", "sessions", "throttle"] as const;

/** Everything a reset must bring back: the rows, the schema (triggers too) and the migration history. */
async function snapshot(db: postgres.Sql = sql): Promise<Snapshot> {
  const counts: Record<string, number> = {};
  for (const table of TABLES) {
    const [row] = await db`SELECT count(*)::int AS n FROM ${db(table)}`;
    counts[table] = Number(row?.n);
  }
  const products =
    await db`SELECT id, name, description, category, price::text, slogan, stock FROM products ORDER BY id`;
  const schema = await db`
    SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner) AS owner,
           coalesce(pg_get_indexdef(c.oid), '') AS indexdef,
           (SELECT string_agg(pg_get_constraintdef(k.oid), ' | ' ORDER BY k.conname)
              FROM pg_constraint k WHERE k.conrelid = c.oid) AS constraints
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' ORDER BY c.relname`;
  // The products_changed notifications db-service follows come from these triggers.
  const triggers = await db`
    SELECT t.tgname, c.relname, pg_get_triggerdef(t.oid) AS def
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND NOT t.tgisinternal ORDER BY t.tgname`;
  const migrations = await db`SELECT id, hash, created_at FROM drizzle.__drizzle_migrations ORDER BY id`;
  return { counts, products: [...products], schema: [...schema], triggers: [...triggers], migrations: [...migrations] };
}

/** Changes every kind of data a reset must undo. */
async function makeChanges(): Promise<void> {
  const [user] = await sql`
    INSERT INTO users (sid, username, email, password_hash)
    VALUES ('12110001', 'alice', 'alice@mail.sustech.edu.cn', 'not-a-real-hash') RETURNING id`;
  await sql`
    INSERT INTO orders (user_id, product_id, quantity, unit_price, idempotency_key)
    VALUES (${user?.id}, 1, 2, 49.99, 'k1')`;
  await sql`
    INSERT INTO sessions (id, user_id, expires_at)
    VALUES ('00000000-0000-4000-8000-000000000001', ${user?.id}, now() + interval '1 day')`;
  await sql`INSERT INTO throttle (key, hits, window_ends) VALUES ('login:alice', 5, now() + interval '15 minutes')`;
  await sql`UPDATE products SET stock = 498, price = 1.00 WHERE id = 1`;
  await putProduct(sql, { name: "Limited Mug", category: "Drinkware", price: "5.00", stock: 7 });
}

/** A new, empty database on the test server (as a new pg-data volume has), and its URL. */
async function emptyDatabase(name: string): Promise<string> {
  await sql.unsafe(`CREATE DATABASE ${name}`);
  return Object.assign(new URL(pg.url), { pathname: `/${name}` }).href;
}

const migrationTags = (
  JSON.parse(read("db-init/migrations/meta/_journal.json")) as { entries: { tag: string }[] }
).entries.map((e) => e.tag);

before(async () => {
  pg = await startTestPostgres({ migrate });
  sql = postgres(pg.url, { max: 2, onnotice: () => {} });
  seeded = await snapshot();
});

after(async () => {
  await sql?.end();
  await pg?.destroy();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe("npm run db:reset", () => {
  test("the fresh database is the seed: no users or orders, the three products at stock 500", () => {
    assert.deepEqual(seeded.counts, { users: 0, products: 3, orders: 0, sessions: 0, throttle: 0 });
    assert.equal(seeded.migrations.length, migrationTags.length, "every migration recorded");
    assert.deepEqual(
      seeded.products.map((p) => {
        const { name, price, stock } = p as { name: string; price: string; stock: number };
        return [name, price, stock];
      }),
      [
        ["SUSTech Hoodie", "49.99", 500],
        ["SUSTech Water Bottle", "19.99", 500],
        ["SUSTech Notebook", "9.99", 500],
      ],
    );
  });

  test("without --yes says what it would do, changes nothing and exits 1", async () => {
    await makeChanges();
    const before = await snapshot();
    const result = await run("db-reset.ts", [], { DATABASE_URL: pg.url });
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stdout, /would reset postgres:\/\/merch:\*\*\*@127\.0\.0\.1:\d+\/merch \(from DATABASE_URL\)/);
    assert.match(result.stdout, /now: 1 users, 4 products, 1 orders, 1 sessions\n/);
    assert.match(result.stdout, /npm run db:reset -- --yes/);
    // The test server's password is random (testkit/src/postgres.ts): it shows nowhere.
    assert.ok(!(result.stdout + result.stderr).includes(new URL(pg.url).password), "the password is never printed");
    assert.deepEqual(await snapshot(), before);
  });

  test("with --yes brings back exactly the seeded state: data, schema, migration history and identities", async () => {
    const result = await run("db-reset.ts", ["--yes"], { DATABASE_URL: pg.url });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /done; the database now has 0 users, 3 products, 0 orders, 0 sessions\n/);
    assert.deepEqual(await snapshot(), seeded);
    // Identities start again: the first user is 1, and new products continue after the seed
    // (tried in a transaction that is rolled back, so the seeded state stays for the next tests).
    const ids = await sql
      .begin(async (tx) => {
        const [user] = await tx`
          INSERT INTO users (sid, username, email, password_hash) VALUES ('1', 'bob', 'bob@x.cn', 'h') RETURNING id`;
        const product = await putProduct(tx, { name: "Cap", category: "Apparel", price: "15", stock: 1 });
        throw new Rollback([user?.id, product]);
      })
      .catch((err: unknown) => (err instanceof Rollback ? err.ids : Promise.reject(err)));
    assert.deepEqual(ids, [1, 4]);
    // The schema is public as a new database has it: owned by pg_database_owner, usable by all.
    const [schema] = await sql`
      SELECT pg_get_userbyid(nspowner) AS owner, has_schema_privilege('public', 'public', 'USAGE') AS usage
        FROM pg_namespace WHERE nspname = 'public'`;
    assert.deepEqual({ ...schema }, { owner: "pg_database_owner", usage: true });
  });

  test("finds the running npm start store through $DATA_DIR/store.json", async () => {
    const dataDir = storeJson(pg.url, process.pid);
    const result = await run("db-reset.ts", [], { DATA_DIR: dataDir });
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stdout, new RegExp(`from ${join(dataDir, "store.json")} \\(the running npm start\\)`));
  });

  test("refuses a bad DATABASE_URL without touching anything", async () => {
    const result = await run("db-reset.ts", ["--yes"], { DATABASE_URL: "http://example.com/" });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /DATABASE_URL is not a postgres:\/\/ URL/);
  });
});

describe("npm run db:migrate", () => {
  test("on a migrated database: already up to date, nothing changed", async () => {
    const before = await snapshot();
    const result = await run("db-migrate.ts", [], { DATABASE_URL: pg.url });
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stdout,
      /^db:migrate: postgres:\/\/merch:\*\*\*@127\.0\.0\.1:\d+\/merch \(from DATABASE_URL\): already up to date$/m,
    );
    assert.ok(!(result.stdout + result.stderr).includes(new URL(pg.url).password), "the password is never printed");
    assert.deepEqual(await snapshot(), before);
  });

  test("on an empty database: applies every migration, giving exactly the seeded store", async () => {
    const url = await emptyDatabase("operator_migrate");
    const result = await run("db-migrate.ts", [], { DATABASE_URL: url });
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stdout,
      new RegExp(`/operator_migrate \\(from DATABASE_URL\\): applied ${migrationTags.join(", ")}$`, "m"),
    );
    const db = postgres(url, { max: 1, onnotice: () => {} });
    try {
      assert.deepEqual(await snapshot(db), seeded);
    } finally {
      await db.end();
    }
  });

  test("finds the running npm start store through $DATA_DIR/store.json", async () => {
    const dataDir = storeJson(pg.url, process.pid);
    const result = await run("db-migrate.ts", [], { DATA_DIR: dataDir });
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stdout,
      new RegExp(`\\(from ${join(dataDir, "store.json")} \\(the running npm start\\)\\): already up to date`),
    );
  });

  test("says what to do when no store is running, and fails on a database it cannot reach", async () => {
    const noStore = await run("db-migrate.ts", [], { DATA_DIR: tempDir() });
    assert.equal(noStore.code, 2);
    assert.match(noStore.stderr, /DATABASE_URL is not set and no store is running .*npm start/);

    const down = `postgres://merch:x@127.0.0.1:${await freePort()}/merch`;
    const unreachable = await run("db-migrate.ts", [], { DATABASE_URL: down });
    assert.equal(unreachable.code, 1, unreachable.stdout);
    assert.match(unreachable.stderr, /ECONNREFUSED/);
  });
});

describe("npm run db:psql", () => {
  test("runs psql on DATABASE_URL with the arguments after --", async () => {
    const result = await run("db-psql.ts", ["-c", "select count(*) from products"], { DATABASE_URL: pg.url });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^\s*count\s*$/m);
    assert.match(result.stdout, /^\s*3\s*$/m);
  });

  test("passes psql's exit status through", async () => {
    const result = await run("db-psql.ts", ["-v", "ON_ERROR_STOP=1", "-c", "select * from no_such_table"], {
      DATABASE_URL: pg.url,
    });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /relation "no_such_table" does not exist/);
  });

  test("without DATABASE_URL uses the running npm start store from $DATA_DIR/store.json", async () => {
    const dataDir = storeJson(pg.url, process.pid);
    const result = await run("db-psql.ts", ["-tA", "-c", "select count(*) from products"], { DATA_DIR: dataDir });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), "3");
  });

  test("says what to do when no store is running", async () => {
    const noStore = await run("db-psql.ts", [], { DATA_DIR: tempDir() });
    assert.equal(noStore.code, 2);
    assert.match(noStore.stderr, /DATABASE_URL is not set and no store is running .*store\.json does not exist/);
    assert.match(noStore.stderr, /npm start/);

    // A store.json left by a store that died: its pid is gone.
    const gone = spawnSync(process.execPath, ["-e", ""]).pid;
    const stale = await run("db-psql.ts", [], { DATA_DIR: storeJson(pg.url, gone) });
    assert.equal(stale.code, 2);
    assert.match(stale.stderr, new RegExp(`store \\(pid ${gone}\\) that is no longer running`));
  });

  test("says how to install psql when there is none", async () => {
    const result = await run("db-psql.ts", ["-c", "select 1"], { DATABASE_URL: pg.url, PATH: tempDir() });
    assert.equal(result.code, 127);
    assert.match(result.stderr, /psql was not found on PATH.*apt-get install postgresql-client/);
  });
});
