import { createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { OrderService } from "@merch/gen/merch/store/v1/order_pb";
import { ProductService } from "@merch/gen/merch/store/v1/product_pb";
import { UserService } from "@merch/gen/merch/store/v1/user_pb";
import { createLogger, GuardedSessionManager, sendServiceCredential } from "@merch/kit";
import { startTestPostgres, type TestPostgres } from "@merch/testkit";
import { type DbService, startDbService } from "../app.ts";
import { loadConfig } from "../config.ts";
import { migrate } from "../migrate.ts";

// db-service's test harness: a real PostgreSQL 17 with db-init's migrations, a real db-service in
// this process, and fixtures. Only tests import it (never in an image); the end-to-end tests use
// its product fixtures too.

import type { StoreClients } from "./fixtures.ts";

export {
  FIXTURE_PASSWORD,
  newProduct,
  newUser,
  type ProductFixture,
  putProduct,
  type SignedIn,
  type StoreClients,
  sessionOf,
  signIn,
  stockOf,
} from "./fixtures.ts";

/** Every suite runs once per transport against the same running server. */
export const TRANSPORTS = ["gRPC over h2c", "Connect JSON over HTTP/1.1"] as const;
export type TransportName = (typeof TRANSPORTS)[number];

/** The credential the test db-services run with; clients from here send it. */
export const TEST_SERVICE_CREDENTIAL = "test-service-credential-0123456789abcdef0123456789";

export interface DbStack {
  pg: TestPostgres;
  baseUrl: string;
  service: DbService;
  transport(name: TransportName): Transport;
  clients(name: TransportName): StoreClients;
  stop(): Promise<void>;
}

/** A throwaway PostgreSQL 17 (one per test file) with db-init's migrations applied. */
export function startMigratedPostgres(): Promise<TestPostgres> {
  return startTestPostgres({ migrate });
}

/** A real PostgreSQL 17 and a real db-service on free ports. */
export async function startDbStack(env: Record<string, string> = {}): Promise<DbStack> {
  const pg = await startMigratedPostgres();
  const service = await startDbService(
    loadConfig({
      DATABASE_URL: pg.url,
      PORT: "0",
      HOST: "127.0.0.1",
      DB_CONNECT_TIMEOUT_S: "2",
      SERVICE_CREDENTIAL: TEST_SERVICE_CREDENTIAL,
      ...env,
    }),
    createLogger("db-service", process.env.TEST_LOG_LEVEL ?? "silent"),
  );
  const baseUrl = `http://127.0.0.1:${service.port}`;
  // Owned here so that stop() can close it: a session left open keeps the test process alive.
  const h2 = new GuardedSessionManager(baseUrl);
  const interceptors = [sendServiceCredential(TEST_SERVICE_CREDENTIAL)];
  const transports: Record<TransportName, Transport> = {
    "gRPC over h2c": createGrpcTransport({ baseUrl, sessionManager: h2, interceptors }),
    "Connect JSON over HTTP/1.1": createConnectTransport({
      baseUrl,
      httpVersion: "1.1",
      useBinaryFormat: false,
      interceptors,
    }),
  };
  return {
    pg,
    baseUrl,
    service,
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
