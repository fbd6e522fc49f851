import { ConnectError } from "@connectrpc/connect";
import type { Logger } from "@merch/kit";
import { ErrorReason, inSpan, raceAbort, rpcError } from "@merch/kit";
import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import type { DbServiceConfig } from "./config.ts";
import type { DbMetrics } from "./metrics.ts";
import * as schema from "./schema.ts";

export type Db = PostgresJsDatabase<typeof schema>;

/** How often the database is asked whether it answers, and how long an answer may take. */
const PING_INTERVAL_MS = 200;
// A new connection (the first, or the one after a failed ping) also has to be made and
// authenticated (SCRAM) before it can answer: on a busy machine that alone took longer than
// PING_TIMEOUT_MS, and db-service took a healthy database for dead. A frozen server is still
// found within PING_TIMEOUT_MS on the connection that was answering a moment before.
const CONNECT_PING_TIMEOUT_MS = 2000;
const TICK_MS = 25;
const PING_TIMEOUT_MS = 500;

export interface Database {
  /** The pool of the moment: a new one replaces it whenever the database comes back. */
  readonly sql: postgres.Sql;
  readonly db: Db;
  /** Whether the database answered the last ping. */
  readonly up: boolean;
  /** Aborted the moment the database is found down (a new signal once it is back up). */
  readonly downSignal: AbortSignal;
  /**
   * Runs work on the database, as operation `name` (its span and its timing). While the database
   * is down, fails at once; when it goes down meanwhile, fails at once too, without waiting for a
   * frozen server: DATABASE_UNAVAILABLE either way.
   */
  run<T>(name: string, work: (db: Db) => Promise<T>): Promise<T>;
  /** Called with every change of `up`. */
  onChange(listener: (up: boolean) => void): void;
  /** Gives the pool up, as when a ping fails: for a driver fault that left it unusable. */
  reset(why: string): void;
  close(): Promise<void>;
}

export const databaseUnavailable = (): ConnectError =>
  rpcError(ErrorReason.DATABASE_UNAVAILABLE, "the database is unavailable; nothing was changed, retry later");

type PoolConfig = Pick<DbServiceConfig, "databaseUrl" | "poolMax" | "statementTimeoutMs" | "connectTimeoutS">;

function openPool(config: PoolConfig): postgres.Sql {
  return postgres(config.databaseUrl, {
    max: config.poolMax,
    connect_timeout: config.connectTimeoutS,
    idle_timeout: 60,
    max_lifetime: 30 * 60,
    onnotice: () => {},
    connection: {
      application_name: "db-service",
      statement_timeout: config.statementTimeoutMs,
      idle_in_transaction_session_timeout: config.statementTimeoutMs * 2,
      // Timestamps come back as text in UTC, which convert.ts turns into protobuf exactly.
      TimeZone: "UTC",
    },
  });
}

/**
 * The database, watched. A dedicated connection pings it every 200 ms; a ping that fails or takes
 * longer than 500 ms (a server that is gone, or frozen and silent) marks it down at once, and the
 * pool is given up, so no call waits on a dead or frozen server: calls fail in well under a second.
 * The first ping that succeeds again brings a new pool, free of the old one's dead connections and
 * reconnect backoff, so calls succeed again within a ping or two of the database's return.
 */
export function openDatabase(config: PoolConfig, logger: Logger, metrics?: DbMetrics): Database {
  let sql = openPool(config);
  let db: Db = drizzle({ client: sql, schema });
  let up = false;
  let closed = false;
  const listeners: ((up: boolean) => void)[] = [];
  let down = new AbortController();
  down.abort();

  const set = (now: boolean, why?: string) => {
    if (now === up) return;
    up = now;
    metrics?.databaseUp.set(now ? 1 : 0);
    logger[now ? "info" : "warn"]({ database: now ? "up" : "down", why }, "database health changed");
    if (!now) {
      down.abort();
      // Calls in flight on the old pool fail now instead of waiting for the server; a
      // transaction that had not committed is rolled back by the server when its socket closes.
      void sql.end({ timeout: 0 }).catch(() => {});
    } else {
      sql = openPool(config);
      db = drizzle({ client: sql, schema });
      down = new AbortController();
    }
    for (const listener of listeners) listener(now);
  };

  let pinger: postgres.Sql | undefined;
  const ping = async (): Promise<true | string> => {
    const fresh = pinger === undefined;
    pinger ??= postgres(config.databaseUrl, {
      max: 1,
      connect_timeout: CONNECT_PING_TIMEOUT_MS / 1000,
      idle_timeout: 0,
      onnotice: () => {},
      connection: { application_name: "db-service-health" },
    });
    const current = pinger;
    const limitMs = fresh ? CONNECT_PING_TIMEOUT_MS : PING_TIMEOUT_MS;
    const timeout = ownTime(limitMs);
    try {
      const answer = await Promise.race([
        current`SELECT 1`.then(() => true as const),
        timeout.done.then(() => `no answer within ${limitMs} ms`),
      ]);
      if (answer !== true) throw new Error(answer);
      return true;
    } catch (err) {
      // Never wait for a frozen server to answer a cancel: drop the connection and dial anew.
      pinger = undefined;
      void current.end({ timeout: 0 }).catch(() => {});
      return err instanceof Error ? err.message : String(err);
    } finally {
      timeout.cancel();
    }
  };

  let timer: NodeJS.Timeout | undefined;
  const watch = async () => {
    const result = await ping();
    if (closed) return;
    set(result === true, result === true ? undefined : result);
    timer = setTimeout(() => void watch(), PING_INTERVAL_MS);
  };
  const started = watch();

  return {
    get sql() {
      return sql;
    },
    get db() {
      return db;
    },
    get up() {
      return up;
    },
    get downSignal() {
      return down.signal;
    },
    async run(name, work) {
      await started;
      if (!up) throw databaseUnavailable();
      const timer = metrics?.operationDuration.startTimer({ db_system_name: "postgresql", db_operation_name: name });
      metrics?.connectionsUsed.inc({ state: "used" });
      try {
        return await inSpan(`db ${name}`, { "db.system.name": "postgresql", "db.operation.name": name }, () =>
          raceAbort(work(db), down.signal, databaseUnavailable),
        );
      } finally {
        metrics?.connectionsUsed.dec({ state: "used" });
        timer?.();
      }
    },
    onChange(listener) {
      listeners.push(listener);
    },
    reset(why) {
      set(false, why);
    },
    async close() {
      closed = true;
      clearTimeout(timer);
      await Promise.all([sql.end({ timeout: 5 }), pinger?.end({ timeout: 1 })]);
    },
  };
}

// postgres.js error codes and SQLSTATEs that mean "the database cannot be reached right now".
const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENOTFOUND",
  "EPIPE",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "53300", // too_many_connections
]);

function codeOf(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null || !("code" in err)) return undefined;
  return String((err as { code: unknown }).code);
}

// drizzle wraps the driver's error in its own, with the original as the cause.
function postgresError(err: unknown): postgres.PostgresError | undefined {
  if (err instanceof postgres.PostgresError) return err;
  if (err instanceof Error && err.cause instanceof postgres.PostgresError) return err.cause;
  return undefined;
}

/** The SQLSTATE of a PostgreSQL error, for example "23505" for a unique violation. */
export function sqlState(err: unknown): string | undefined {
  return postgresError(err)?.code;
}

export function constraintOf(err: unknown): string | undefined {
  return postgresError(err)?.constraint_name;
}

/** True when the server itself answered with this error (so it knows what it did). */
export function isServerAnswer(err: unknown): boolean {
  return postgresError(err) !== undefined;
}

/** True when the error means the database is unreachable, not that it refused something. */
function isUnreachable(err: unknown): boolean {
  const cause = err instanceof Error && err.cause !== undefined ? err.cause : err;
  const code = codeOf(cause) ?? codeOf(err);
  return code !== undefined && (UNREACHABLE.has(code) || code.startsWith("08"));
}

/**
 * Turns what escaped a handler into the ConnectError the caller sees: an outage is
 * DATABASE_UNAVAILABLE, a cancelled statement UPSTREAM_TIMEOUT, a character PostgreSQL cannot
 * store a validation failure, anything unexpected INTERNAL with no database detail leaked.
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (isUnreachable(err)) return databaseUnavailable();
  switch (sqlState(err)) {
    case "57014":
      return rpcError(ErrorReason.UPSTREAM_TIMEOUT, "the database did not answer in time; nothing was changed");
    case "40001":
    case "40P01":
      return rpcError(ErrorReason.CONFLICT, "a concurrent change conflicted; nothing was changed, retry");
    case "22021": // character_not_in_repertoire: a NUL byte
    case "22P05": // untranslatable_character
      return rpcError(ErrorReason.VALIDATION_FAILED, "a text field holds a character that cannot be stored");
    default:
      return rpcError(ErrorReason.INTERNAL, "internal error");
  }
}

/** postgres.js's known crash on a connection whose socket is already gone (see server.ts). */
export function isDriverWriteFault(err: unknown): boolean {
  return (
    err instanceof TypeError &&
    /Cannot read properties of null \(reading 'write'\)/.test(err.message) &&
    /postgres[/\\]src[/\\]connection\.js/.test(err.stack ?? "")
  );
}

/**
 * Resolves once this process has run for `ms` (in ticks of TICK_MS): time the event loop stood
 * still (a long GC, or the process starved of CPU on a busy machine) does not count. A plain
 * timer would fire first thing when the loop wakes up, before the socket holding the database's
 * answer is read, and take a healthy database for dead; on a busy 2-core machine it did.
 */
function ownTime(ms: number): { done: Promise<void>; cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  let counted = 0;
  let last = performance.now();
  const done = new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      counted += Math.min(now - last, TICK_MS * 2);
      last = now;
      if (counted >= ms) resolve();
      else timer = setTimeout(tick, TICK_MS);
    };
    timer = setTimeout(tick, TICK_MS);
  });
  return { done, cancel: () => clearTimeout(timer) };
}
