import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, type Http2SessionManager } from "@connectrpc/connect-node";
import { Health } from "@merch/gen/grpc/health/v1/health_pb";
import { LogService } from "@merch/gen/merch/log/v1/log_pb";
import { OrderService } from "@merch/gen/merch/store/v1/order_pb";
import { ProductService } from "@merch/gen/merch/store/v1/product_pb";
import { UserService } from "@merch/gen/merch/store/v1/user_pb";
import { GuardedSessionManager } from "@merch/kit/session-manager";
import type { DbTransport } from "./config.ts";

export interface DbClients {
  products: Client<typeof ProductService>;
  users: Client<typeof UserService>;
  orders: Client<typeof OrderService>;
  health: Client<typeof Health>;
  close(): void;
}

export interface LogClients {
  logs: Client<typeof LogService>;
  health: Client<typeof Health>;
  close(): void;
}

function transportFor(kind: DbTransport, baseUrl: string, timeoutMs: number, sessions: Http2SessionManager): Transport {
  switch (kind) {
    case "grpc":
      return createGrpcTransport({ baseUrl, sessionManager: sessions, defaultTimeoutMs: timeoutMs });
    case "connect-h2":
      return createConnectTransport({
        baseUrl,
        httpVersion: "2",
        sessionManager: sessions,
        useBinaryFormat: true,
        defaultTimeoutMs: timeoutMs,
      });
    case "connect-h1":
      return createConnectTransport({
        baseUrl,
        httpVersion: "1.1",
        useBinaryFormat: true,
        defaultTimeoutMs: timeoutMs,
      });
  }
}

/** Typed clients for db-service; every call carries a deadline. */
export function dbClients(baseUrl: string, kind: DbTransport, timeoutMs: number): DbClients {
  const sessions = new GuardedSessionManager(baseUrl);
  const transport = transportFor(kind, baseUrl, timeoutMs, sessions);
  return {
    products: createClient(ProductService, transport),
    users: createClient(UserService, transport),
    orders: createClient(OrderService, transport),
    health: createClient(Health, transport),
    close: () => sessions.abort(),
  };
}

/** log-service over gRPC on h2c: client streaming needs HTTP/2. */
export function logClients(baseUrl: string): LogClients {
  const sessions = new GuardedSessionManager(baseUrl);
  const transport = createGrpcTransport({ baseUrl, sessionManager: sessions });
  return {
    logs: createClient(LogService, transport),
    health: createClient(Health, transport),
    close: () => sessions.abort(),
  };
}
