import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { OrderService } from "@merch/gen/merch/store/v1/order_pb";
import { ProductService } from "@merch/gen/merch/store/v1/product_pb";
import { UserService } from "@merch/gen/merch/store/v1/user_pb";
import { createLogger } from "@merch/kit/logger";
import { startDbService } from "../../db-service/src/app.ts";
import { loadConfig } from "../../db-service/src/config.ts";
import { startTestPostgres, type TestPostgres } from "./postgres.ts";

export interface StoreClients {
  products: Client<typeof ProductService>;
  users: Client<typeof UserService>;
  orders: Client<typeof OrderService>;
}

/** Every suite runs once per transport against the same running server. */
export const TRANSPORTS = ["gRPC over h2c", "Connect JSON over HTTP/1.1"] as const;
export type TransportName = (typeof TRANSPORTS)[number];

export interface DbStack {
  pg: TestPostgres;
  baseUrl: string;
  transport(name: TransportName): Transport;
  clients(name: TransportName): StoreClients;
  stop(): Promise<void>;
}

/** A real PostgreSQL 17 and a real db-service on free ports. */
export async function startDbStack(env: Record<string, string> = {}): Promise<DbStack> {
  const pg = await startTestPostgres();
  const service = await startDbService(
    loadConfig({ DATABASE_URL: pg.url, PORT: "0", HOST: "127.0.0.1", DB_CONNECT_TIMEOUT_S: "2", ...env }),
    createLogger("db-service", process.env.TEST_LOG_LEVEL ?? "silent"),
  );
  const baseUrl = `http://127.0.0.1:${service.port}`;
  // Owned here so that stop() can close it: a session left open keeps the test process alive.
  const h2 = new Http2SessionManager(baseUrl);
  const transports: Record<TransportName, Transport> = {
    "gRPC over h2c": createGrpcTransport({ baseUrl, sessionManager: h2 }),
    "Connect JSON over HTTP/1.1": createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false }),
  };
  return {
    pg,
    baseUrl,
    transport: (name) => transports[name],
    clients: (name) => ({
      products: createClient(ProductService, transports[name]),
      users: createClient(UserService, transports[name]),
      orders: createClient(OrderService, transports[name]),
    }),
    async stop() {
      h2.abort();
      await service.close();
      await pg.destroy();
    },
  };
}
