import type { ServiceImpl } from "@connectrpc/connect";
import type { ProductService } from "@merch/gen/merch/store/v1/product_pb";
import { asc, eq, sql } from "drizzle-orm";
import { productToProto } from "./convert.ts";
import type { Db } from "./db.ts";
import { productNotFound } from "./refusals.ts";
import { products } from "./schema.ts";
import { Check } from "./validation.ts";

export function productService(db: Db): ServiceImpl<typeof ProductService> {
  // Prepared once: drizzle builds the SQL a single time, PostgreSQL plans it once per connection.
  const all = db.select().from(products).orderBy(asc(products.id)).prepare("products_all");
  const byId = db
    .select()
    .from(products)
    .where(eq(products.id, sql.placeholder("id")))
    .prepare("product_by_id");
  return {
    async listProducts() {
      const rows = await all.execute();
      return { products: rows.map(productToProto) };
    },
    async getProduct(req) {
      new Check().id("id", req.id).done();
      const [row] = await byId.execute({ id: req.id });
      if (!row) throw productNotFound(req.id);
      return { product: productToProto(row) };
    },
  };
}
