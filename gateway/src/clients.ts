import { type Client, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Health } from "@merch/gen/grpc/health/v1/health_pb";
import { LogService } from "@merch/gen/merch/log/v1/log_pb";
import { CatalogueService } from "@merch/gen/merch/store/v1/catalogue_pb";
import { OrderService } from "@merch/gen/merch/store/v1/order_pb";
import { ProductService } from "@merch/gen/merch/store/v1/product_pb";
import { UserService } from "@merch/gen/merch/store/v1/user_pb";
import { GuardedSessionManager, MAX_CONCURRENT_STREAMS, sendServiceCredential, traceClient } from "@merch/kit";
import { limitCalls } from "./call-limit.ts";
import type { DbTransport, GatewayConfig } from "./config.ts";

/**
 * How the gateway reaches db-service and log-service. buildGateway takes them ready-made, so
 * tests can hand it in-memory routers (createRouterTransport) instead of real services.
 */
export interface Downstream {
  db: Transport;
  log: Transport;
  /** Calls to db-service waiting for a turn (limitCalls). */
  dbCallsWaiting?(): number;
  /** Releases connections; called when the gateway closes. */
  close(): void;
}

export interface DbClients {
  products: Client<typeof ProductService>;
  users: Client<typeof UserService>;
  orders: Client<typeof OrderService>;
  catalogue: Client<typeof CatalogueService>;
  health: Client<typeof Health>;
}

export interface LogClients {
  logs: Client<typeof LogService>;
  health: Client<typeof Health>;
}

export function dbClients(transport: Transport): DbClients {
  return {
    products: createClient(ProductService, transport),
    users: createClient(UserService, transport),
    orders: createClient(OrderService, transport),
    catalogue: createClient(CatalogueService, transport),
    health: createClient(Health, transport),
  };
}

export function logClients(transport: Transport): LogClients {
  return { logs: createClient(LogService, transport), health: createClient(Health, transport) };
}

function dbTransport(
  kind: DbTransport,
  baseUrl: string,
  timeoutMs: number,
  interceptors: Interceptor[],
  sessions: GuardedSessionManager,
): Transport {
  // No compression on the loopback or private link to db-service: a batch's answer passed the
  // 1 KiB threshold, and gzip cost both sides more CPU than the bytes were worth.
  const common = { baseUrl, defaultTimeoutMs: timeoutMs, interceptors, acceptCompression: [] };
  switch (kind) {
    case "grpc":
      return createGrpcTransport({ ...common, sessionManager: sessions });
    case "connect-h2":
      return createConnectTransport({ ...common, httpVersion: "2", sessionManager: sessions, useBinaryFormat: true });
    case "connect-h1":
      return createConnectTransport({ ...common, httpVersion: "1.1", useBinaryFormat: true });
  }
}

/** The real services, over the network, every call carrying the service credential. */
export function networkDownstream(config: GatewayConfig): Downstream {
  // Calls to db-service are traced (their spans are children of the request's); the log stream
  // lives longer than any request, so its events carry their trace ids instead.
  const credential = config.serviceCredential === undefined ? [] : [sendServiceCredential(config.serviceCredential)];
  const interceptors = [traceClient(), ...credential];
  const dbSessions = new GuardedSessionManager(config.dbServiceUrl);
  const logSessions = new GuardedSessionManager(config.logServiceUrl);
  // Calls to db-service in flight at once: as many as it lets one connection have.
  const db = limitCalls(
    dbTransport(config.dbTransport, config.dbServiceUrl, config.rpcTimeoutMs, interceptors, dbSessions),
    MAX_CONCURRENT_STREAMS,
    config.rpcTimeoutMs,
  );
  return {
    db,
    dbCallsWaiting: () => db.waiting(),
    // log-service over gRPC on h2c: client streaming needs HTTP/2.
    log: createGrpcTransport({ baseUrl: config.logServiceUrl, sessionManager: logSessions, interceptors: credential }),
    close() {
      dbSessions.abort();
      logSessions.abort();
    },
  };
}
