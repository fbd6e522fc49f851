import { createHash } from "node:crypto";
import type { Logger } from "@merch/kit";
import Fastify, { type FastifyInstance } from "fastify";
import { admitAtMost } from "./admission.ts";
import { type Downstream, dbClients, logClients, networkDownstream } from "./clients.ts";
import type { GatewayConfig } from "./config.ts";
import { EventLog } from "./event-log.ts";
import { doorLimits } from "./limits.ts";
import { GatewayMetrics } from "./observe.ts";
import { OrderBatcher } from "./order-batcher.ts";
import { apiDocs } from "./plugins/api-docs.ts";
import { cors } from "./plugins/cors.ts";
import { earlyRefusals } from "./plugins/early-refusals.ts";
import { health } from "./plugins/health.ts";
import { problemAnswers } from "./plugins/problem-answers.ts";
import { answerClientError, requestEvents } from "./plugins/request-events.ts";
import { requestSpans } from "./plugins/request-spans.ts";
import { everyOperationRouted, restRoutes, tokenCheck } from "./plugins/rest-routes.ts";
import { securityHeaders } from "./plugins/security-headers.ts";
import { SHOP_PREFIX, shopService } from "./plugins/shop-service.ts";
import { storefront } from "./plugins/storefront.ts";
import { ProductCache } from "./product-cache.ts";
import { orderRoutes } from "./rest/orders.ts";
import { productRoutes } from "./rest/products.ts";
import { staffRoutes } from "./rest/staff.ts";
import { systemRoutes } from "./rest/system.ts";
import { userRoutes } from "./rest/users.ts";
import { serverOptions } from "./server-options.ts";
import { loadSpec, loadSpecText } from "./spec.ts";
import { StaffDesk } from "./staff.ts";
import { Store } from "./store.ts";
import { TokenVerifier } from "./tokens.ts";

export interface Gateway {
  app: FastifyInstance;
  /** The Prometheus text of /metrics, served on the metrics port (server.ts), never the public one. */
  metricsText(): Promise<string>;
  /** Stops taking requests, lets those in flight finish for up to SHUTDOWN_GRACE_MS, then ends. */
  close(): Promise<void>;
}

/**
 * The gateway: REST routes from openapi.yaml and ShopService on one Fastify server, both adapters
 * of one Store, each part a plugin of its own (plugins/). `downstream` defaults to the real
 * services over the network; tests may pass in-memory transports (createRouterTransport).
 */
export async function buildGateway(
  config: GatewayConfig,
  logger: Logger,
  downstream: Downstream = networkDownstream(config),
): Promise<Gateway> {
  const specText = loadSpecText();
  const spec = loadSpec(specText);
  const db = dbClients(downstream.db);
  const log = logClients(downstream.log);
  const events = new EventLog(log.logs, logger, { maxEvents: config.logQueueMax });
  const tokens = { secret: config.jwtSecret, issuer: config.jwtIssuer, audience: config.jwtAudience };
  const products = new ProductCache(db, config.productCacheTtlMs, logger);
  products.start();
  const store = new Store({
    db,
    events,
    tokens,
    verifier: new TokenVerifier(tokens),
    products,
    orders: new OrderBatcher(db.orders, { timeoutMs: config.rpcTimeoutMs }),
    // Derived, so that no second secret has to be configured, and never equal to the signing key.
    auditKey: createHash("sha256").update("merch-store login-name audit\u0000").update(config.jwtSecret).digest(),
  });
  const staff = new StaffDesk({ db, events, products });
  const metrics = new GatewayMetrics(
    () => events.stats(),
    () => products.following,
    () => downstream.dbCallsWaiting?.() ?? 0,
  );
  const ctx = {
    store,
    specText,
    productJson: { list: () => products.listJson(), get: (id: number) => products.getJson(id) },
  };

  let closing = false;
  const app = Fastify(serverOptions(config, logger, (err, socket) => answerClientError(err, socket, events)));
  app.server.maxConnections = config.http.maxConnections;
  admitAtMost(app.server, {
    maxInFlight: config.http.maxRequestsInFlight,
    maxAttached: config.http.maxAttachedConnections,
  });
  // One line a part; a new part is a new plugin file in plugins/ and a line here. Hooks run in
  // the order their plugins are registered: the request's span comes first, as the context
  // everything after it runs in; the security headers come before any answer. REST handlers may be
  // registered by more than one plugin (restRoutes): everyOperationRouted checks, last, that every
  // operation of openapi.yaml found one.
  await app.register(requestSpans, { metrics });
  await app.register(problemAnswers);
  await app.register(securityHeaders);
  await app.register(cors, { origins: config.corsOrigins });
  await app.register(requestEvents, { events });
  await app.register(earlyRefusals, { closing: () => closing });
  await app.register(doorLimits, {
    maxInflightBodyBytes: config.http.maxInflightBodyBytes,
    connectPrefix: SHOP_PREFIX,
  });
  await app.register(apiDocs, { spec });
  await app.register(storefront);
  await app.register(shopService, { store, staff, shutdownTimeoutMs: config.shutdownGraceMs });
  await app.register(health, { spec, events, db: db.health, log: log.health });
  await app.register(restRoutes, {
    spec,
    authenticate: tokenCheck(store),
    handlers: { ...systemRoutes(ctx), ...productRoutes(ctx), ...userRoutes(ctx), ...orderRoutes(ctx) },
  });
  await app.register(restRoutes, { spec, authenticate: tokenCheck(store), handlers: staffRoutes(staff) });
  everyOperationRouted(app, spec);

  return {
    app,
    metricsText: () => metrics.text(),
    async close() {
      closing = true;
      // Requests in flight may finish within the grace period; then their connections are cut.
      const cut = setTimeout(() => app.server.closeAllConnections(), config.shutdownGraceMs);
      try {
        await app.close();
      } finally {
        clearTimeout(cut);
      }
      await products.close();
      await events.close(3000);
      downstream.close();
    },
  };
}
