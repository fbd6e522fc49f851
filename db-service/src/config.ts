import { type MetricsListen, readConfig, readMetricsListen, readServiceCredential } from "@merch/kit";

export interface LoginLimits {
  /**
   * Wrong passwords per account (by username or sid alike) within a window, before 429: counted
   * apart for each address the account logged in from before, and once for all other addresses.
   */
  accountMaxFailures: number;
  /** Wrong passwords per client address within a window, on accounts that do not know the address. */
  addressMaxFailures: number;
  windowS: number;
  /** How long a login waits for the password checks under way on its account before a 429. */
  busyWaitMs: number;
  /** Registrations per client address within a window. */
  registerAddressMax: number;
  registerWindowS: number;
}

export interface DbServiceConfig {
  port: number;
  host: string;
  /** Where /metrics is served (loopback by default; never the RPC port). */
  metrics: MetricsListen;
  databaseUrl: string;
  /** Most connections db-service opens; requests beyond that wait in postgres.js's queue. */
  poolMax: number;
  /** Longest any statement may run before PostgreSQL cancels it. */
  statementTimeoutMs: number;
  /** Longest a new database connection may take; after that the call answers UNAVAILABLE. */
  connectTimeoutS: number;
  /** What callers must present for every user and order call (kit/src/service-credential.ts). */
  serviceCredential: string | undefined;
  limits: LoginLimits;
  shutdownGraceMs: number;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): DbServiceConfig {
  return readConfig(
    (e) => ({
      port: e.int("PORT", 50051, 0, 65535),
      // Loopback unless told otherwise: only the gateway may call db-service (compose sets 0.0.0.0
      // inside its private network).
      host: e.string("HOST", "127.0.0.1"),
      metrics: readMetricsListen(e, 9465),
      databaseUrl: e.required(
        "DATABASE_URL",
        "postgres://user:password@host:5432/merch (npm start sets it for the embedded server)",
      ),
      poolMax: e.int("DB_POOL_MAX", 10, 1, 100),
      statementTimeoutMs: e.int("DB_STATEMENT_TIMEOUT_MS", 5000, 100, 600_000),
      connectTimeoutS: e.int("DB_CONNECT_TIMEOUT_S", 5, 1, 60),
      serviceCredential: readServiceCredential(e),
      limits: {
        accountMaxFailures: e.int("LOGIN_MAX_FAILURES", 5, 1, 1000),
        addressMaxFailures: e.int("LOGIN_ADDRESS_MAX_FAILURES", 1000, 1, 1_000_000),
        windowS: e.int("LOGIN_WINDOW_S", 900, 1, 86_400),
        // Below the gateway's RPC_TIMEOUT_MS (5 s): a login that waited too long is a 429 to retry, not a 504.
        busyWaitMs: e.int("LOGIN_BUSY_WAIT_MS", 3500, 0, 60_000),
        registerAddressMax: e.int("REGISTER_ADDRESS_MAX", 1000, 1, 1_000_000),
        registerWindowS: e.int("REGISTER_WINDOW_S", 600, 1, 86_400),
      },
      shutdownGraceMs: e.int("SHUTDOWN_GRACE_MS", 10_000, 0, 120_000),
    }),
    env,
  );
}
