import { PlaceOrderRequestSchema } from "@merch/gen/merch/shop/v1/shop_pb";
import { authOf, type Handlers, type RestContext } from "../context.ts";
import { fromRestJson, orderJson } from "../convert.ts";

export function orderRoutes(ctx: RestContext): Handlers {
  return {
    async listOrders(req) {
      const { limit, cursor } = req.query as { limit: number; cursor?: string };
      const page = await ctx.store.listOrders(authOf(req), { pageSize: limit, pageToken: cursor ?? "" });
      return { items: page.orders.map(orderJson), next_cursor: page.nextPageToken || null };
    },

    async placeOrder(req, reply) {
      const { productId, quantity } = fromRestJson(PlaceOrderRequestSchema, req.body);
      const key = req.headers["idempotency-key"];
      const { order, replayed } = await ctx.store.placeOrder(authOf(req), {
        productId,
        quantity,
        idempotencyKey: typeof key === "string" ? key : undefined,
      });
      if (replayed) reply.header("idempotent-replayed", "true");
      return reply.code(201).header("location", `/orders/${order.id}`).send(orderJson(order));
    },

    async getOrder(req) {
      const { id } = req.params as { id: number };
      return orderJson(await ctx.store.getOrder(authOf(req), id));
    },

    async cancelOrder(req) {
      const { id } = req.params as { id: number };
      return orderJson(await ctx.store.cancelOrder(authOf(req), id));
    },
  };
}
