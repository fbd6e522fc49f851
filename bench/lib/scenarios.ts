// The steady scenarios: each drives one kind of request for a fixed time. HTTP ones go through
// the gateway (or the bare route, its ceiling); two call db-service or PostgreSQL directly, to
// show what the layers above them cost.
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { OrderService, PlaceOrderRequestSchema } from "@merch/gen/merch/store/v1/order_pb";
import { CREDENTIAL_HEADER, GuardedSessionManager, sendServiceCredential } from "@merch/kit";
import { closedLoop } from "./closed-loop.ts";
import { h2loadGenerator } from "./h2load.ts";
import type { HttpGenerator, HttpLoad } from "./load.ts";
import type { Scenario } from "./measure.ts";
import type { BenchOptions } from "./options.ts";
import { SCALING } from "./options.ts";
import { openCeiling } from "./pg-ceiling.ts";
import type { Shopper, Store } from "./store.ts";

export interface ScenarioContext {
  store: Store;
  options: BenchOptions;
  http: HttpGenerator;
  shoppers: readonly Shopper[];
  /** The products order scenarios buy. */
  productIds: readonly number[];
}

const json = { "content-type": "application/json" };

/** The loads the scenarios, the warm-up and the tracing pair share. */
export function loads(ctx: ScenarioContext) {
  const tokens = ctx.shoppers.map((s) => s.token);
  return {
    products: (): HttpLoad => ({
      url: ctx.store.stack.gatewayUrl,
      method: "GET",
      paths: [1, 2, 3].map((i) => `/products/${i}`),
    }),
    orders:
      (idempotencyKey: boolean, accounts = tokens.length) =>
      (): HttpLoad => ({
        url: ctx.store.stack.gatewayUrl,
        method: "POST",
        paths: ["/orders"],
        headers: json,
        tokens: tokens.slice(0, accounts),
        bodies: ctx.productIds.map((id) => JSON.stringify({ product_id: id, quantity: 1 })),
        idempotencyKey,
      }),
    shopOrders: (): HttpLoad => ({
      url: ctx.store.stack.gatewayUrl,
      method: "POST",
      paths: ["/merch.shop.v1.ShopService/PlaceOrder"],
      headers: json,
      tokens,
      bodies: ctx.productIds.map((productId) => JSON.stringify({ productId, quantity: 1 })),
    }),
  };
}

/** A scenario the HTTP load generator (wrk or autocannon) drives. */
export function httpScenario(
  ctx: ScenarioContext,
  id: string,
  title: string,
  load: () => HttpLoad,
  opts: { orders?: boolean; connections?: number; note?: string } = {},
): Scenario {
  const connections = opts.connections ?? ctx.options.connections;
  return {
    id,
    title,
    connections,
    orders: opts.orders ?? false,
    generator: ctx.http.name,
    run: (durationS) => ctx.http.run({ load: load(), connections, durationS }),
    ...(opts.note ? { note: opts.note } : {}),
  };
}

/** What the PostgreSQL ceiling sent, for the report, once it has run. */
export interface CeilingSeen {
  /** The orders per transaction the store formed in this run's `orders` scenario, once it ran. */
  storeBatch?: () => number | undefined;
  statements?: readonly string[];
  batchSize?: number;
  batch?: { batches: number; orders: number };
}

/** Every steady scenario, in the order they run; `ceiling` is filled in when pg-ceiling runs. */
export function steadyScenarios(ctx: ScenarioContext, ceiling: CeilingSeen): Scenario[] {
  const load = loads(ctx);
  return [
    httpScenario(ctx, "bare", "bare Fastify route (ceiling)", () => ({
      url: ctx.store.bareUrl,
      method: "GET",
      paths: ["/"],
    })),
    httpScenario(ctx, "product", "`GET /products/{id}`", load.products),
    httpScenario(ctx, "shop-product", "Shop `GetProduct` (Connect JSON)", () => ({
      url: ctx.store.stack.gatewayUrl,
      method: "POST",
      paths: ["/merch.shop.v1.ShopService/GetProduct"],
      headers: json,
      bodies: [1, 2, 3].map((id) => JSON.stringify({ id })),
    })),
    httpScenario(ctx, "orders", "`POST /orders`", load.orders(false), { orders: true }),
    // Every order of one account: what costs the same whoever buys, and what does not.
    httpScenario(ctx, "orders-1user", "`POST /orders`, one account", load.orders(false, 1), { orders: true }),
    httpScenario(ctx, "orders-key", "`POST /orders` + Idempotency-Key", load.orders(true), { orders: true }),
    httpScenario(ctx, "shop-orders", "Shop `PlaceOrder` (Connect JSON)", load.shopOrders, { orders: true }),
    directScenario(ctx),
    ceilingScenario(ctx, ceiling),
    ...SCALING.filter((c) => c !== ctx.options.connections).map((c) =>
      httpScenario(ctx, `scale-${c}`, `\`POST /orders\` at ${c} connections`, load.orders(false), {
        orders: true,
        connections: c,
      }),
    ),
  ];
}

// Installed (apt) only when the direct scenario first runs.
let h2loadReady: ReturnType<typeof h2loadGenerator> | undefined;
const h2load = () => {
  h2loadReady ??= h2loadGenerator();
  return h2loadReady;
};

/**
 * db-service's PlaceOrder called as the gateway calls it: Connect binary over one h2c connection
 * with a deadline, `connections` calls in flight. h2load (C) sends it by default; `--direct-client
 * node` uses connect-node, the gateway's own client, at a higher CPU cost in the bench.
 */
function directScenario(ctx: ScenarioContext): Scenario {
  const { store, shoppers, productIds } = ctx;
  const { connections } = ctx.options;
  const { url } = store.stack.services["db-service"];
  const title = "db-service `PlaceOrder` direct (Connect binary, h2c)";
  const base = { id: "db-direct", title, connections, orders: true };
  if (ctx.options.directClient !== "node") {
    const shopper = shoppers[0] as Shopper;
    // h2load repeats one body: one shopper, and no key (db-service then makes one per call, as
    // the gateway does): a key of ours would make every call after the first a replay.
    const body = toBinary(
      PlaceOrderRequestSchema,
      create(PlaceOrderRequestSchema, {
        session: { userId: shopper.userId, sessionId: shopper.sessionId },
        productId: productIds[0] ?? 0,
        quantity: 1,
      }),
    );
    return {
      ...base,
      generator: "h2load",
      note: "one shopper",
      run: async (durationS) =>
        (await h2load()).run(
          {
            url: `${url}/${OrderService.typeName}/PlaceOrder`,
            headers: {
              "content-type": "application/proto",
              "connect-protocol-version": "1",
              // The gateway's RPC_TIMEOUT_MS: with a deadline, db-service bounds each batch's statements.
              "connect-timeout-ms": "5000",
              [CREDENTIAL_HEADER]: store.stack.serviceCredential,
            },
            body,
          },
          connections,
          durationS,
        ),
    };
  }
  const sessions = new GuardedSessionManager(url);
  const transport = createConnectTransport({
    baseUrl: url,
    httpVersion: "2",
    useBinaryFormat: true,
    sessionManager: sessions,
    defaultTimeoutMs: 5000,
    interceptors: [sendServiceCredential(store.stack.serviceCredential)],
  });
  const orders = createClient(OrderService, transport);
  let n = 0;
  return {
    ...base,
    generator: "bench process (connect-node)",
    async run(durationS) {
      return closedLoop(
        async (i) => {
          const s = shoppers[i % shoppers.length] as Shopper;
          try {
            await orders.placeOrder({
              session: { userId: s.userId, sessionId: s.sessionId },
              productId: productIds[i % productIds.length] ?? 0,
              quantity: 1,
              // As the gateway does for an order without a key of the client's.
              idempotencyKey: `bench:${process.pid}:${++n}`,
            });
            return "ok";
          } catch (err) {
            if (err instanceof ConnectError) return `rpc ${Code[err.code]}: ${err.rawMessage.slice(0, 60)}`;
            throw err;
          }
        },
        connections,
        durationS,
      );
    },
  };
}

/** Without an `orders` scenario in the run to take it from, the ceiling's batch size. */
export const DEFAULT_CEILING_BATCH = 32;

/**
 * PostgreSQL alone: db-service's set-based batch, on one connection, at the batch size the store
 * formed in the `orders` scenario of this run (orders per transaction, rounded).
 */
function ceilingScenario(ctx: ScenarioContext, seen: CeilingSeen): Scenario {
  const { store, shoppers, productIds } = ctx;
  const scenario: Scenario = {
    id: "pg-ceiling",
    title: "PostgreSQL ceiling (db-service's batch statements, one connection)",
    connections: 1,
    orders: true,
    generator: "bench process",
    async run(durationS) {
      const formed = seen.storeBatch?.();
      const batchSize = formed === undefined ? DEFAULT_CEILING_BATCH : Math.max(1, Math.round(formed));
      seen.batchSize = batchSize;
      scenario.note = `batches of ${batchSize}${formed === undefined ? ", no orders scenario to take it from" : ", as the store formed"}`;
      const ceiling = openCeiling(store.databaseUrl);
      seen.statements = ceiling.statements;
      try {
        return await ceiling.run({ batchSize, durationS, buyers: shoppers, productIds });
      } finally {
        seen.batch = ceiling.stats();
        await ceiling.close();
      }
    },
  };
  return scenario;
}
