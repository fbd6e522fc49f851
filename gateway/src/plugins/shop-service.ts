import { createContextValues } from "@connectrpc/connect";
import { fastifyConnectPlugin } from "@connectrpc/connect-fastify";
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { kRequest, ShopService, shopRoutes } from "../shop.ts";
import type { StaffDesk } from "../staff.ts";
import type { Store } from "../store.ts";

// merch.shop.v1.ShopService (shop.ts) over Connect, gRPC-Web and gRPC, on the same server as the
// REST API.

const SHOP_PREFIX = `/${ShopService.typeName}/`;

export interface ShopServiceOptions {
  store: Store;
  staff: StaffDesk;
  /** How long calls in flight may go on once the gateway closes. */
  shutdownTimeoutMs: number;
}

const plugin: FastifyPluginAsync<ShopServiceOptions> = async (app, { store, staff, shutdownTimeoutMs }) => {
  // On every request under the service's path, a method of it or not: its answers are a caller's own.
  app.addHook("onRequest", async (req, reply) => {
    if (req.url.startsWith(SHOP_PREFIX)) reply.header("cache-control", "no-store");
  });
  const shop = shopRoutes(store, staff);
  // In a scope of its own: connect-fastify brings its own body parsers (JSON and binary protobuf)
  // for its routes, where the REST routes take JSON only.
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    await scope.register(fastifyConnectPlugin, {
      routes: shop.routes,
      interceptors: shop.interceptors,
      contextValues: (req: FastifyRequest) => createContextValues().set(kRequest, req),
      shutdownTimeoutMs,
    });
  });
};

export const shopService = fp(plugin, { name: "shop-service" });
