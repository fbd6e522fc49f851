import { readConfig } from "@merch/kit/config";

export interface DbServiceConfig {
  port: number;
  host: string;
  databaseUrl: string;
  /** Most connections db-service opens; requests beyond that wait in postgres.js's queue. */
  poolMax: number;
  /** Longest any statement may run before PostgreSQL cancels it. */
  statementTimeoutMs: number;
  /** Longest a new database connection may take; after that the call answers UNAVAILABLE. */
  connectTimeoutS: number;
  corsOrigins: string[];
  shutdownGraceMs: number;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): DbServiceConfig {
  return readConfig(
    (e) => ({
      port: e.int("PORT", 50051, 0, 65535),
      host: e.string("HOST", "0.0.0.0"),
      databaseUrl: e.required(
        "DATABASE_URL",
        "postgres://user:password@host:5432/merch (npm start sets it for the embedded server)",
      ),
      poolMax: e.int("DB_POOL_MAX", 10, 1, 100),
      statementTimeoutMs: e.int("DB_STATEMENT_TIMEOUT_MS", 5000, 100, 600_000),
      connectTimeoutS: e.int("DB_CONNECT_TIMEOUT_S", 5, 1, 60),
      corsOrigins: e.list("CORS_ORIGINS"),
      shutdownGraceMs: e.int("SHUTDOWN_GRACE_MS", 10_000, 0, 120_000),
    }),
    env,
  );
}
