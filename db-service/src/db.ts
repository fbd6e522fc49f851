import { Code, ConnectError } from "@connectrpc/connect";
import { rpcError } from "@merch/kit/errors";
import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import type { DbServiceConfig } from "./config.ts";
import * as schema from "./schema.ts";

export type Db = PostgresJsDatabase<typeof schema>;

export interface Database {
  db: Db;
  sql: postgres.Sql;
  /** True when a trivial query answers within a second. */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

export function openDatabase(
  config: Pick<DbServiceConfig, "databaseUrl" | "poolMax" | "statementTimeoutMs" | "connectTimeoutS">,
): Database {
  const sql = postgres(config.databaseUrl, {
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
  const db = drizzle({ client: sql, schema });
  return {
    db,
    sql,
    async ping() {
      try {
        const q = sql`SELECT 1`;
        const timer = setTimeout(() => q.cancel(), 1000);
        await q.finally(() => clearTimeout(timer));
        return true;
      } catch {
        return false;
      }
    },
    close: () => sql.end({ timeout: 5 }),
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

/**
 * Turns what escaped a handler into the ConnectError the caller sees: an outage is UNAVAILABLE,
 * a cancelled statement DEADLINE_EXCEEDED, anything unexpected INTERNAL with no database
 * detail leaked.
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  // drizzle wraps driver errors; the driver's error is the cause.
  const cause = err instanceof Error && err.cause !== undefined ? err.cause : err;
  const code = codeOf(cause) ?? codeOf(err);
  if (code !== undefined && (UNREACHABLE.has(code) || code.startsWith("08"))) {
    return rpcError(Code.Unavailable, "database_unavailable", "the database is unavailable, retry later");
  }
  if (code === "57014") {
    return rpcError(Code.DeadlineExceeded, "database_timeout", "the database did not answer in time");
  }
  if (code === "40001" || code === "40P01") {
    return rpcError(Code.Aborted, "transaction_conflict", "a concurrent change conflicted, retry");
  }
  return rpcError(Code.Internal, "internal", "internal error");
}
