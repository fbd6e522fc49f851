import { randomBytes } from "node:crypto";
import { isIP } from "node:net";
import { type EnvReader, type MetricsListen, readConfig, readMetricsListen, readServiceCredential } from "@merch/kit";

export const DB_TRANSPORTS = ["grpc", "connect-h2", "connect-h1"] as const;
export type DbTransport = (typeof DB_TRANSPORTS)[number];

/** Whose X-Forwarded-For to believe: nobody, the nearest `hops` proxies, or these addresses. */
export type TrustProxy = false | number | string[];

export interface HttpLimits {
  /** Longest a whole request (headers and body) may take to arrive: 408 after. */
  requestTimeoutMs: number;
  /** Longest the request headers may take to arrive. */
  headersTimeoutMs: number;
  /** How long an idle keep-alive connection stays open. */
  keepAliveTimeoutMs: number;
  /** Longest a connection may stay silent, whatever it is doing. */
  connectionTimeoutMs: number;
  /** Most connections open at once; more are refused at once. */
  maxConnections: number;
  /** Most requests answered at once; past it idle connections are not read (gateway/src/admission.ts). */
  maxRequestsInFlight: number;
  /**
   * Most idle connections the HTTP server keeps set up (a parser each, about 8 KB) between
   * requests; past it an idle connection is detached after its answer until its next request
   * (gateway/src/admission.ts).
   */
  maxAttachedConnections: number;
  /** Most request-body bytes held at once across all requests; more is refused 503 (gateway/src/limits.ts). */
  maxInflightBodyBytes: number;
}

export interface GatewayConfig {
  port: number;
  host: string;
  /** Where /metrics is served: loopback by default, never the public port. */
  metrics: MetricsListen;
  dbServiceUrl: string;
  logServiceUrl: string;
  /** How the gateway talks to db-service; the README's "How the gateway talks to db-service" has the measurements. */
  dbTransport: DbTransport;
  /** Deadline of every call to db-service. */
  rpcTimeoutMs: number;
  /** How old a product page may be while the gateway cannot follow db-service's product changes. */
  productCacheTtlMs: number;
  jwtSecret: Uint8Array;
  /** True when no JWT_SECRET was given and a random one was made (local development only). */
  jwtSecretGenerated: boolean;
  jwtIssuer: string;
  jwtAudience: string;
  /** What the gateway presents to db-service and log-service. */
  serviceCredential: string | undefined;
  /** Most log events held in memory while log-service is slow or down. */
  logQueueMax: number;
  trustProxy: TrustProxy;
  corsOrigins: string[];
  http: HttpLimits;
  shutdownGraceMs: number;
}

const MIN_SECRET_BYTES = 32;

/**
 * TRUST_PROXY in Fastify's own forms: a hop count, or proxy addresses and CIDRs. Never "trust
 * whatever the client wrote": `true` is refused, since the left-most X-Forwarded-For entry is
 * the client's to choose.
 */
function readTrustProxy(e: EnvReader): TrustProxy {
  const raw = e.optional("TRUST_PROXY");
  if (raw === undefined || raw === "false" || raw === "0") return false;
  if (/^[0-9]+$/.test(raw)) {
    const hops = Number(raw);
    if (hops > 16) e.problems.push(`TRUST_PROXY must be a hop count from 0 to 16, got ${raw}`);
    return hops;
  }
  const entries = e.list("TRUST_PROXY");
  const bad = entries.filter((entry) => {
    const [address, bits, extra] = entry.split("/");
    const family = isIP(address ?? "");
    if (family === 0 || extra !== undefined) return true;
    // A /0 range is every address: the client's own X-Forwarded-For entries would be believed, as with `true`.
    return (
      bits !== undefined && !(/^[0-9]+$/.test(bits) && Number(bits) >= 1 && Number(bits) <= (family === 4 ? 32 : 128))
    );
  });
  if (raw === "true" || bad.length > 0) {
    e.problems.push(
      `TRUST_PROXY must be false, the number of proxies in front of the gateway, or their addresses/CIDRs (comma-separated; never true or a /0 range, which would believe what the client writes), got "${raw}"`,
    );
    return false;
  }
  return entries;
}

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
      metrics: readMetricsListen(e, 9464),
      dbServiceUrl: e.url("DB_SERVICE_URL", "http://127.0.0.1:50051"),
      logServiceUrl: e.url("LOG_SERVICE_URL", "http://127.0.0.1:50052"),
      dbTransport: e.oneOf("DB_TRANSPORT", "connect-h2", DB_TRANSPORTS),
      rpcTimeoutMs: e.int("RPC_TIMEOUT_MS", 5000, 50, 60_000),
      productCacheTtlMs: e.int("PRODUCT_CACHE_TTL_MS", 1000, 0, 60_000),
      jwtSecret,
      jwtSecretGenerated: secret === undefined,
      jwtIssuer: e.string("JWT_ISSUER", "sustech-merch-store"),
      jwtAudience: e.string("JWT_AUDIENCE", "sustech-merch-store-api"),
      serviceCredential: readServiceCredential(e),
      logQueueMax: e.int("LOG_QUEUE_MAX", 10_000, 10, 1_000_000),
      trustProxy: readTrustProxy(e),
      corsOrigins: e.list("CORS_ORIGINS"),
      http: {
        requestTimeoutMs: e.int("HTTP_REQUEST_TIMEOUT_MS", 30_000, 1000, 600_000),
        headersTimeoutMs: e.int("HTTP_HEADERS_TIMEOUT_MS", 10_000, 1000, 600_000),
        keepAliveTimeoutMs: e.int("HTTP_KEEP_ALIVE_TIMEOUT_MS", 72_000, 1000, 600_000),
        connectionTimeoutMs: e.int("HTTP_CONNECTION_TIMEOUT_MS", 120_000, 1000, 3_600_000),
        maxConnections: e.int("HTTP_MAX_CONNECTIONS", 20_000, 1, 1_000_000),
        maxRequestsInFlight: e.int("HTTP_MAX_REQUESTS_IN_FLIGHT", 256, 1, 1_000_000),
        maxAttachedConnections: e.int("HTTP_MAX_ATTACHED_CONNECTIONS", 256, 0, 1_000_000),
        maxInflightBodyBytes: e.int("HTTP_MAX_INFLIGHT_BODY_BYTES", 32 * 1024 * 1024, 64 * 1024, 1024 * 1024 * 1024),
      },
      shutdownGraceMs: e.int("SHUTDOWN_GRACE_MS", 10_000, 0, 120_000),
    };
  }, env);
}
