import {
  AdjustStockRequestSchema,
  CreateProductRequestSchema,
  UpdateProductRequestSchema,
} from "@merch/gen/merch/shop/v1/shop_pb";
import { authOf, type Handlers } from "../context.ts";
import { fromRestJson, orderJson, productJson } from "../convert.ts";
import { STATUS_BY_NAME, type StaffDesk } from "../staff.ts";

/** The staff routes of openapi.yaml (tag staff), adapters to StaffDesk. */
export function staffRoutes(staff: StaffDesk): Handlers {
  return {
    async createProduct(req, reply) {
      const { name, description, category, price, slogan, stock } = fromRestJson(CreateProductRequestSchema, req.body);
      const product = await staff.createProduct(authOf(req), { name, description, category, price, slogan, stock });
      return reply.code(201).header("location", `/products/${product.id}`).send(productJson(product));
    },

    async updateProduct(req) {
      const { id } = req.params as { id: number };
      const { name, description, category, price, slogan, archived } = fromRestJson(
        UpdateProductRequestSchema,
        req.body,
      );
      return productJson(
        await staff.updateProduct(authOf(req), id, { name, description, category, price, slogan, archived }),
      );
    },

    async adjustStock(req) {
      const { id } = req.params as { id: number };
      const { delta, reason } = fromRestJson(AdjustStockRequestSchema, req.body);
      return productJson(await staff.adjustStock(authOf(req), id, delta, reason));
    },

    async listAllOrders(req) {
      const q = req.query as { limit: number; cursor?: string; status?: string; product_id?: number };
      const page = await staff.listAllOrders(authOf(req), {
        pageSize: q.limit,
        pageToken: q.cursor ?? "",
        status: q.status === undefined ? undefined : STATUS_BY_NAME[q.status],
        productId: q.product_id,
      });
      return { items: page.orders.map(orderJson), next_cursor: page.nextPageToken || null };
    },

    async markOrderReady(req) {
      const { id } = req.params as { id: number };
      return orderJson(await staff.markReady(authOf(req), id));
    },

    async markOrderCollected(req) {
      const { id } = req.params as { id: number };
      return orderJson(await staff.markCollected(authOf(req), id));
    },
  };
}
