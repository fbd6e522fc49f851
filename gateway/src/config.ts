import { randomBytes } from "node:crypto";
import { readConfig } from "@merch/kit/config";

export const DB_TRANSPORTS = ["grpc", "connect-h2", "connect-h1"] as const;
export type DbTransport = (typeof DB_TRANSPORTS)[number];

export interface GatewayConfig {
  port: number;
  host: string;
  dbServiceUrl: string;
  logServiceUrl: string;
  /** How the gateway talks to db-service; README "Choosing the transport" has the measurements. */
  dbTransport: DbTransport;
  /** Deadline of every call to db-service. */
  rpcTimeoutMs: number;
  /** How old a product page may be (see product-cache.ts); 0 reads db-service every time. */
  productCacheTtlMs: number;
  jwtSecret: Uint8Array;
  /** True when no JWT_SECRET was given and a random one was made (local development only). */
  jwtSecretGenerated: boolean;
  jwtIssuer: string;
  jwtAudience: string;
  loginMaxFailures: number;
  loginWindowS: number;
  /** Most log events held in memory while log-service is slow or down. */
  logQueueMax: number;
  trustProxy: boolean;
  corsOrigins: string[];
  shutdownGraceMs: number;
}

export const MIN_SECRET_BYTES = 32;

export function loadConfig(env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  return readConfig((e) => {
    const production = e.string("NODE_ENV", "development") === "production";
    const secret = e.optional("JWT_SECRET");
    let jwtSecret: Uint8Array;
    if (secret === undefined) {
      if (production)
        e.problems.push("JWT_SECRET is required in production (at least 32 bytes, e.g. `openssl rand -base64 48`)");
      jwtSecret = randomBytes(48);
    } else {
      jwtSecret = new TextEncoder().encode(secret);
      if (jwtSecret.byteLength < MIN_SECRET_BYTES) {
        e.problems.push(
          `JWT_SECRET must be at least ${MIN_SECRET_BYTES} bytes, got ${jwtSecret.byteLength} (e.g. \`openssl rand -base64 48\`)`,
        );
      }
    }
    return {
      port: e.int("PORT", 8080, 0, 65535),
      host: e.string("HOST", "0.0.0.0"),
      dbServiceUrl: e.url("DB_SERVICE_URL", "http://127.0.0.1:50051"),
      logServiceUrl: e.url("LOG_SERVICE_URL", "http://127.0.0.1:50052"),
      dbTransport: e.oneOf("DB_TRANSPORT", "connect-h2", DB_TRANSPORTS),
      rpcTimeoutMs: e.int("RPC_TIMEOUT_MS", 5000, 50, 60_000),
      productCacheTtlMs: e.int("PRODUCT_CACHE_TTL_MS", 1000, 0, 60_000),
      jwtSecret,
      jwtSecretGenerated: secret === undefined,
      jwtIssuer: e.string("JWT_ISSUER", "sustech-merch-store"),
      jwtAudience: e.string("JWT_AUDIENCE", "sustech-merch-store-api"),
      loginMaxFailures: e.int("LOGIN_MAX_FAILURES", 5, 1, 1000),
      loginWindowS: e.int("LOGIN_WINDOW_S", 900, 1, 86_400),
      logQueueMax: e.int("LOG_QUEUE_MAX", 10_000, 10, 1_000_000),
      trustProxy: e.oneOf("TRUST_PROXY", "false", ["true", "false"]) === "true",
      corsOrigins: e.list("CORS_ORIGINS"),
      shutdownGraceMs: e.int("SHUTDOWN_GRACE_MS", 10_000, 0, 120_000),
    };
  }, env);
}
