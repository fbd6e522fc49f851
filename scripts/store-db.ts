// Which database the operator tools (npm run db:psql, db:reset) work on:
//   1. DATABASE_URL, when set (the compose deployment: see the README, "Operate");
//   2. otherwise the store that `npm start` is running, from $DATA_DIR/store.json (DATA_DIR
//      defaults to ./.data), which start.ts writes while the store runs.
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";

export interface StoreDatabase {
  url: string;
  /** Where the URL came from, for messages. */
  source: string;
}

/** Thrown when no database can be found; the message tells the operator what to do. */
export class NoDatabaseError extends Error {
  override name = "NoDatabaseError";
}

export function storeDatabase(env: NodeJS.ProcessEnv = process.env): StoreDatabase {
  const fromEnv = env.DATABASE_URL?.trim();
  if (fromEnv) return { url: checkUrl(fromEnv, "DATABASE_URL"), source: "DATABASE_URL" };

  const dataDir = resolve(env.DATA_DIR?.trim() || ".data");
  const stateFile = join(dataDir, "store.json");
  const hint =
    "Start the store with `npm start`, or set DATABASE_URL (for the compose deployment: " +
    "DATABASE_URL=postgres://merch:$POSTGRES_PASSWORD@localhost:5432/merch).";
  if (!existsSync(stateFile)) {
    throw new NoDatabaseError(`DATABASE_URL is not set and no store is running (${stateFile} does not exist). ${hint}`);
  }
  let state: { databaseUrl?: unknown; pid?: unknown };
  try {
    state = JSON.parse(readFileSync(stateFile, "utf8")) as typeof state;
  } catch (err) {
    throw new NoDatabaseError(`${stateFile} is not valid JSON (${(err as Error).message}). ${hint}`);
  }
  if (typeof state.databaseUrl !== "string" || state.databaseUrl === "") {
    throw new NoDatabaseError(`${stateFile} has no databaseUrl. ${hint}`);
  }
  if (typeof state.pid === "number" && !isRunning(state.pid)) {
    throw new NoDatabaseError(
      `${stateFile} was left by a store (pid ${state.pid}) that is no longer running; its database is not there. ${hint}`,
    );
  }
  return { url: checkUrl(state.databaseUrl, stateFile), source: `${stateFile} (the running npm start)` };
}

function checkUrl(url: string, source: string): string {
  if (!URL.canParse(url) || !/^postgres(ql)?:$/.test(new URL(url).protocol)) {
    throw new NoDatabaseError(`${source} is not a postgres:// URL: ${redact(url)}`);
  }
  return url;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The URL with its password replaced, for printing. */
export function redact(url: string): string {
  if (!URL.canParse(url)) return "(not a URL)";
  const u = new URL(url);
  if (u.password) u.password = "***";
  return u.toString();
}
