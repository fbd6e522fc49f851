import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import { type Order, OrderStatus } from "@merch/gen/merch/store/v1/order_pb";
import type { Product } from "@merch/gen/merch/store/v1/product_pb";
import type { User } from "@merch/gen/merch/store/v1/user_pb";

// The contract's JSON shapes, from db-service's messages. Money stays the decimal string it is.

function time(ts: Timestamp | undefined): string {
  if (!ts) throw new Error("db-service sent a message without a timestamp");
  return timestampDate(ts).toISOString();
}

export function productJson(p: Product) {
  return {
    id: p.id,
    name: p.name,
    description: p.description,
    category: p.category,
    price: p.price,
    slogan: p.slogan,
    stock: p.stock,
    created_at: time(p.createdAt),
  };
}

export function userJson(u: User | undefined) {
  if (!u) throw new Error("db-service sent no user");
  return {
    id: u.id,
    sid: u.sid,
    username: u.username,
    email: u.email,
    is_active: u.isActive,
    created_at: time(u.createdAt),
  };
}

export function orderJson(o: Order | undefined) {
  if (!o) throw new Error("db-service sent no order");
  return {
    id: o.id,
    user_id: o.userId,
    product_id: o.productId,
    quantity: o.quantity,
    unit_price: o.unitPrice,
    total_price: o.totalPrice,
    status: o.status === OrderStatus.CANCELLED ? "cancelled" : "placed",
    created_at: time(o.createdAt),
    cancelled_at: o.cancelledAt ? time(o.cancelledAt) : null,
  };
}
