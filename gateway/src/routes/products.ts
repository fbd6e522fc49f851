import type { GatewayContext, Handlers } from "../context.ts";
import { productJson } from "../convert.ts";

export function productRoutes(ctx: GatewayContext): Handlers {
  return {
    async listProducts() {
      const { products } = await ctx.db.products.listProducts({});
      return products.map(productJson);
    },
    async getProduct(req) {
      const { id } = req.params as { id: number };
      const { product } = await ctx.db.products.getProduct({ id });
      if (!product) throw new Error("db-service sent no product");
      return productJson(product);
    },
  };
}
