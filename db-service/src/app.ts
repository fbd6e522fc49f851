import type { Interceptor } from "@connectrpc/connect";
import { OrderService } from "@merch/gen/merch/store/v1/order_pb";
import { ProductService } from "@merch/gen/merch/store/v1/product_pb";
import { UserService } from "@merch/gen/merch/store/v1/user_pb";
import type { Logger } from "@merch/kit/logger";
import { startRpcServer } from "@merch/kit/serve";
import type { DbServiceConfig } from "./config.ts";
import { openDatabase, toConnectError } from "./db.ts";
import { orderService } from "./orders.ts";
import { productService } from "./products.ts";
import { userService } from "./users.ts";
import { WriteBatcher } from "./write-batcher.ts";

export interface DbService {
  readonly port: number;
  close(): Promise<void>;
}

const HEALTH_INTERVAL_MS = 2000;

/** Every error leaves as a ConnectError with a reason; database faults never leak details. */
const mapErrors: Interceptor = (next) => async (req) => {
  try {
    return await next(req);
  } catch (err) {
    throw toConnectError(err);
  }
};

export async function startDbService(config: DbServiceConfig, logger: Logger): Promise<DbService> {
  const database = openDatabase(config);
  const server = await startRpcServer({
    port: config.port,
    host: config.host,
    services: [ProductService, UserService, OrderService],
    routes(router) {
      router.service(ProductService, productService(database.db));
      router.service(UserService, userService(database.db));
      router.service(OrderService, orderService(database.db, new WriteBatcher(database.sql)));
    },
    corsOrigins: config.corsOrigins,
    logger,
    interceptors: [mapErrors],
    readMaxBytes: 64 * 1024,
  });

  // Health follows the database: NOT_SERVING until it answers, and whenever it stops.
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const probe = async () => {
    const up = await database.ping();
    if (stopped) return;
    const was = server.health.get();
    server.health.set(up ? "SERVING" : "NOT_SERVING");
    if (was !== server.health.get()) logger[up ? "info" : "warn"]({ database: up ? "up" : "down" }, "health changed");
    timer = setTimeout(probe, HEALTH_INTERVAL_MS);
  };
  await probe();

  return {
    port: server.port,
    async close() {
      stopped = true;
      clearTimeout(timer);
      await server.close(config.shutdownGraceMs);
      await database.close();
    },
  };
}
