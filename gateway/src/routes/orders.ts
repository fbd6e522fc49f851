import { currentUserId, eventFor, type GatewayContext, type Handlers } from "../context.ts";
import { orderJson } from "../convert.ts";

export function orderRoutes(ctx: GatewayContext): Handlers {
  return {
    async listOrders(req) {
      const { limit, cursor } = req.query as { limit: number; cursor?: string };
      const page = await ctx.db.orders.listOrders({
        userId: currentUserId(req),
        pageSize: limit,
        pageToken: cursor ?? "",
      });
      return { items: page.orders.map(orderJson), next_cursor: page.nextPageToken || null };
    },

    async placeOrder(req, reply) {
      const { product_id: productId, quantity } = req.body as { product_id: number; quantity: number };
      const key = req.headers["idempotency-key"];
      const { order, replayed } = await ctx.db.orders.placeOrder({
        userId: currentUserId(req),
        productId,
        quantity,
        idempotencyKey: typeof key === "string" ? key : "",
      });
      const json = orderJson(order);
      ctx.events.emit(
        eventFor(req, {
          level: "info",
          event: replayed ? "order.replayed" : "order.placed",
          message: replayed ? "order request repeated with the same Idempotency-Key" : "order placed",
          attributes: {
            order_id: String(json.id),
            product_id: String(json.product_id),
            quantity: String(json.quantity),
            total_price: json.total_price,
          },
        }),
      );
      if (replayed) reply.header("idempotent-replayed", "true");
      return reply.code(201).header("location", `/orders/${json.id}`).send(json);
    },

    async getOrder(req) {
      const { id } = req.params as { id: number };
      const { order } = await ctx.db.orders.getOrder({ userId: currentUserId(req), orderId: id });
      return orderJson(order);
    },

    async cancelOrder(req) {
      const { id } = req.params as { id: number };
      const { order } = await ctx.db.orders.cancelOrder({ userId: currentUserId(req), orderId: id });
      const json = orderJson(order);
      ctx.events.emit(
        eventFor(req, {
          level: "info",
          event: "order.cancelled",
          message: "order cancelled",
          attributes: {
            order_id: String(json.id),
            product_id: String(json.product_id),
            quantity: String(json.quantity),
          },
        }),
      );
      return json;
    },
  };
}
