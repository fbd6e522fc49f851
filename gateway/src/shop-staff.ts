import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { CatalogueEntrySchema, OrderSchema, ProductSchema, type ShopService } from "@merch/gen/merch/shop/v1/shop_pb";
import type { Order, OrderStatus } from "@merch/gen/merch/store/v1/order_pb";
import type { Product } from "@merch/gen/merch/store/v1/product_pb";
import type { StaffDesk } from "./staff.ts";
import type { Authenticated } from "./store.ts";

// ShopService's staff methods: adapters from Connect to StaffDesk, as rest/staff.ts is from REST.

type StaffMethods = Pick<
  ServiceImpl<typeof ShopService>,
  | "createProduct"
  | "updateProduct"
  | "adjustStock"
  | "listCatalogue"
  | "listAllOrders"
  | "markOrderReady"
  | "markOrderCollected"
>;

// db-service's messages have the shop's fields (convert.test.ts holds them to it).
const product = (p: Product) => create(ProductSchema, p as never);
const order = (o: Order | undefined) => {
  if (o === undefined) throw new Error("db-service sent no order");
  return create(OrderSchema, o as never);
};

export function staffShopMethods(staff: StaffDesk, auth: (ctx: HandlerContext) => Authenticated): StaffMethods {
  return {
    async createProduct(req, ctx) {
      const { name, description, category, price, slogan, stock } = req;
      return {
        product: product(await staff.createProduct(auth(ctx), { name, description, category, price, slogan, stock })),
      };
    },
    async updateProduct(req, ctx) {
      const { name, description, category, price, slogan, archived } = req;
      return {
        product: product(
          await staff.updateProduct(auth(ctx), req.id, { name, description, category, price, slogan, archived }),
        ),
      };
    },
    async adjustStock(req, ctx) {
      return { product: product(await staff.adjustStock(auth(ctx), req.id, req.delta, req.reason)) };
    },
    async listCatalogue(_req, ctx) {
      const entries = await staff.listCatalogue(auth(ctx));
      return {
        entries: entries.map((e) =>
          create(CatalogueEntrySchema, { product: e.product && product(e.product), archived: e.archived }),
        ),
      };
    },
    async listAllOrders(req, ctx) {
      const page = await staff.listAllOrders(auth(ctx), {
        pageSize: req.pageSize,
        pageToken: req.pageToken,
        // The shop's and db-service's enums have the same values.
        status: req.status as number as OrderStatus,
        productId: req.productId,
      });
      return { orders: page.orders.map(order), nextPageToken: page.nextPageToken };
    },
    async markOrderReady(req, ctx) {
      return { order: order(await staff.markReady(auth(ctx), req.id)) };
    },
    async markOrderCollected(req, ctx) {
      return { order: order(await staff.markCollected(auth(ctx), req.id)) };
    },
  };
}
