import type { Interceptor } from "@connectrpc/connect";
import { CatalogueService } from "@merch/gen/merch/store/v1/catalogue_pb";
import { OrderService } from "@merch/gen/merch/store/v1/order_pb";
import { ProductService } from "@merch/gen/merch/store/v1/product_pb";
import { UserService } from "@merch/gen/merch/store/v1/user_pb";
import type { Logger } from "@merch/kit";
import { startRpcServer } from "@merch/kit";
import { catalogueService } from "./catalogue.ts";
import type { DbServiceConfig } from "./config.ts";
import { type Database, openDatabase, toConnectError } from "./db.ts";
import { DbMetrics } from "./metrics.ts";
import { migrate } from "./migrate.ts";
import { orderService } from "./orders.ts";
import { ProductFeed, productService } from "./products.ts";
import { sweepSessions } from "./sessions.ts";
import { sweepThrottle } from "./throttle.ts";
import { KNOWN_FOR_DAYS, userService } from "./users.ts";
import { WriteBatcher } from "./write-batcher.ts";

export interface DbService {
  readonly port: number;
  readonly database: Database;
  close(): Promise<void>;
}

const SWEEP_INTERVAL_MS = 60_000;

/** Every error leaves as a ConnectError with a reason; database faults never leak details. */
const mapErrors: Interceptor = (next) => async (req) => {
  try {
    return await next(req);
  } catch (err) {
    throw toConnectError(err);
  }
};

export async function startDbService(config: DbServiceConfig, logger: Logger): Promise<DbService> {
  const report = await migrate(config.databaseUrl);
  if (report.adopted) logger.info("adopted a database made before migrations existed as migration 0000");
  if (report.applied.length > 0) logger.info({ applied: report.applied }, "migrations applied");
  if (config.serviceCredential === undefined) {
    logger.warn("SERVICE_CREDENTIAL is not set: every user and order call will be refused");
  }

  const metrics = new DbMetrics(config.poolMax);
  const database = openDatabase(config, logger, metrics);
  const feed = new ProductFeed(database, logger);
  await feed.start();
  const server = await startRpcServer({
    port: config.port,
    host: config.host,
    services: [ProductService, UserService, OrderService, CatalogueService],
    routes(router) {
      // Orders and stock adjustments share one write path, so they serialise on a product alike.
      const writer = new WriteBatcher(database, { metrics });
      router.service(ProductService, productService(database, feed));
      router.service(UserService, userService(database, config.limits, metrics));
      router.service(OrderService, orderService(database, writer, logger));
      router.service(CatalogueService, catalogueService(database, writer));
    },
    serviceCredential: config.serviceCredential,
    openServices: [ProductService],
    logger,
    interceptors: [mapErrors],
    metrics,
    metricsListen: config.metrics,
    readMaxBytes: 64 * 1024,
  });

  // Health follows the database: NOT_SERVING while it does not answer (db.ts watches it).
  database.onChange(server.health.follow(() => database.up, { logger, signal: server.shutdownSignal }));

  const sweep = setInterval(() => {
    if (!database.up) return;
    void database
      .run("sweep", async (db) => {
        await sweepSessions(db);
        await sweepThrottle(db, KNOWN_FOR_DAYS);
      })
      .catch((err: unknown) => logger.warn({ err: String(err) }, "sweeping ended sessions and windows failed"));
  }, SWEEP_INTERVAL_MS);
  sweep.unref();

  return {
    port: server.port,
    database,
    async close() {
      clearInterval(sweep);
      await server.close(config.shutdownGraceMs);
      await feed.close();
      await database.close();
    },
  };
}
