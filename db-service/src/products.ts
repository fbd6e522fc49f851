import { Code, type ServiceImpl } from "@connectrpc/connect";
import type { ProductService } from "@merch/gen/merch/store/v1/product_pb";
import { rpcError } from "@merch/kit/errors";
import { asc, eq } from "drizzle-orm";
import { productToProto } from "./convert.ts";
import type { Db } from "./db.ts";
import { products } from "./schema.ts";
import { Check } from "./validation.ts";

export function productService(db: Db): ServiceImpl<typeof ProductService> {
  return {
    async listProducts() {
      const rows = await db.select().from(products).orderBy(asc(products.id));
      return { products: rows.map(productToProto) };
    },
    async getProduct(req) {
      new Check().id("id", req.id).done();
      const [row] = await db.select().from(products).where(eq(products.id, req.id));
      if (!row) throw rpcError(Code.NotFound, "product_not_found", `product ${req.id} does not exist`);
      return { product: productToProto(row) };
    },
  };
}
