import { create } from "@bufbuild/protobuf";
import { type Timestamp, TimestampSchema } from "@bufbuild/protobuf/wkt";
import { type Order, OrderSchema, OrderStatus } from "@merch/gen/merch/store/v1/order_pb";
import { type Product, ProductSchema } from "@merch/gen/merch/store/v1/product_pb";
import { type User, UserSchema } from "@merch/gen/merch/store/v1/user_pb";
import type { OrderRow, ProductRow, UserRow } from "./schema.ts";

// "2026-11-22 08:15:30.123456+00", PostgreSQL's ISO output with TimeZone=UTC.
const PG_TIMESTAMP = /^(\d{4,}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?\+00$/;

/** Exact to the microsecond, unlike a JS Date. */
export function timestampFromPg(text: string): Timestamp {
  const m = PG_TIMESTAMP.exec(text);
  if (!m) throw new Error(`unexpected timestamp format: ${text}`);
  const seconds = Date.parse(`${m[1]}T${m[2]}Z`) / 1000;
  const nanos = Number((m[3] ?? "").padEnd(9, "0"));
  return create(TimestampSchema, { seconds: BigInt(seconds), nanos });
}

export function productToProto(row: ProductRow): Product {
  return create(ProductSchema, {
    id: row.id,
    name: row.name,
    description: row.description,
    category: row.category,
    price: row.price,
    slogan: row.slogan,
    stock: row.stock,
    createdAt: timestampFromPg(row.createdAt),
  });
}

export function userToProto(row: UserRow): User {
  return create(UserSchema, {
    id: row.id,
    sid: row.sid,
    username: row.username,
    email: row.email,
    isActive: row.isActive,
    createdAt: timestampFromPg(row.createdAt),
  });
}

export function orderToProto(row: OrderRow): Order {
  return create(OrderSchema, {
    id: row.id,
    userId: row.userId,
    productId: row.productId,
    quantity: row.quantity,
    unitPrice: row.unitPrice,
    totalPrice: row.totalPrice,
    status: row.status === "cancelled" ? OrderStatus.CANCELLED : OrderStatus.PLACED,
    createdAt: timestampFromPg(row.createdAt),
    ...(row.cancelledAt === null ? {} : { cancelledAt: timestampFromPg(row.cancelledAt) }),
  });
}
