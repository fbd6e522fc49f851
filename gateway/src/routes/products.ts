import type { GatewayContext, Handlers } from "../context.ts";
import { productJson } from "../convert.ts";

const JSON_TYPE = "application/json; charset=utf-8";

export function productRoutes(ctx: GatewayContext): Handlers {
  return {
    async listProducts(_req, reply) {
      return reply.type(JSON_TYPE).send(await ctx.products.list());
    },
    async getProduct(req, reply) {
      const { id } = req.params as { id: number };
      const cached = await ctx.products.get(id);
      if (cached !== undefined) return reply.type(JSON_TYPE).send(cached);
      // Not in the snapshot: unknown (db-service answers 404) or newer than the snapshot.
      const { product } = await ctx.db.products.getProduct({ id });
      if (!product) throw new Error("db-service sent no product");
      return productJson(product);
    },
  };
}
