import { type Handlers, type RestContext, requestInfo } from "../context.ts";
import { productJson } from "../convert.ts";

const JSON_TYPE = "application/json; charset=utf-8";

export function productRoutes(ctx: RestContext): Handlers {
  return {
    async listProducts(_req, reply) {
      return reply.type(JSON_TYPE).send(await ctx.productJson.list());
    },
    async getProduct(req, reply) {
      const { id } = req.params as { id: number };
      const cached = await ctx.productJson.get(id);
      if (cached !== undefined) return reply.type(JSON_TYPE).send(cached);
      return productJson(await ctx.store.getProduct(requestInfo(req), id));
    },
  };
}
