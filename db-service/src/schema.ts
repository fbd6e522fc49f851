import { sql } from "drizzle-orm";
import {
  boolean,
  char,
  check,
  index,
  integer,
  numeric,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  varchar,
} from "drizzle-orm/pg-core";

// The same tables as db-init/init.sql, which is what creates them; schema.test.ts proves that
// the two agree. Timestamps stay PostgreSQL's text so that protobuf gets every microsecond.
const timestamptz = (name: string) => timestamp(name, { withTimezone: true, mode: "string" });

export const users = pgTable(
  "users",
  {
    id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
    sid: varchar("sid", { length: 15 }).notNull(),
    username: varchar("username", { length: 50 }).notNull(),
    email: varchar("email", { length: 255 }).notNull(),
    passwordHash: text("password_hash").notNull(),
    isActive: boolean("is_active").notNull().default(true),
    createdAt: timestamptz("created_at").notNull().defaultNow(),
    updatedAt: timestamptz("updated_at").notNull().defaultNow(),
    deactivatedAt: timestamptz("deactivated_at"),
  },
  (t) => [
    uniqueIndex("users_sid_key").on(sql`lower(${t.sid})`),
    uniqueIndex("users_username_key").on(sql`lower(${t.username})`),
    uniqueIndex("users_email_key").on(sql`lower(${t.email})`),
    check("users_sid_format", sql`${t.sid} ~ '^[A-Za-z0-9]{1,15}$'`),
    check("users_username_format", sql`${t.username} ~ '^[A-Za-z0-9_.-]{3,50}$'`),
    check("users_deactivated_consistent", sql`${t.isActive} = (${t.deactivatedAt} IS NULL)`),
  ],
);

export const products = pgTable(
  "products",
  {
    id: integer("id").primaryKey().generatedByDefaultAsIdentity(),
    name: varchar("name", { length: 100 }).notNull().unique(),
    description: text("description").notNull().default(""),
    category: varchar("category", { length: 50 }).notNull(),
    price: numeric("price", { precision: 10, scale: 2 }).notNull(),
    slogan: text("slogan").notNull().default(""),
    stock: integer("stock").notNull(),
    createdAt: timestamptz("created_at").notNull().defaultNow(),
  },
  (t) => [check("products_price_check", sql`${t.price} >= 0`), check("products_stock_check", sql`${t.stock} >= 0`)],
);

export const orders = pgTable(
  "orders",
  {
    id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
    userId: integer("user_id")
      .notNull()
      .references(() => users.id),
    productId: integer("product_id")
      .notNull()
      .references(() => products.id),
    quantity: integer("quantity").notNull(),
    unitPrice: numeric("unit_price", { precision: 10, scale: 2 }).notNull(),
    totalPrice: numeric("total_price", { precision: 10, scale: 2 })
      .notNull()
      .generatedAlwaysAs(sql`unit_price * quantity`),
    status: text("status", { enum: ["placed", "cancelled"] })
      .notNull()
      .default("placed"),
    createdAt: timestamptz("created_at").notNull().defaultNow(),
    cancelledAt: timestamptz("cancelled_at"),
  },
  (t) => [
    index("orders_user_id_id_idx").on(t.userId, t.id.desc()),
    index("orders_product_id_idx").on(t.productId),
    check("orders_quantity_check", sql`${t.quantity} BETWEEN 1 AND 3`),
    check("orders_unit_price_check", sql`${t.unitPrice} >= 0`),
    check("orders_status_check", sql`${t.status} IN ('placed', 'cancelled')`),
    check("orders_cancelled_consistent", sql`(${t.status} = 'cancelled') = (${t.cancelledAt} IS NOT NULL)`),
  ],
);

export const idempotencyKeys = pgTable(
  "idempotency_keys",
  {
    userId: integer("user_id")
      .notNull()
      .references(() => users.id),
    key: varchar("key", { length: 255 }).notNull(),
    requestHash: char("request_hash", { length: 64 }).notNull(),
    orderId: integer("order_id")
      .notNull()
      .references(() => orders.id),
    createdAt: timestamptz("created_at").notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.userId, t.key] }), index("idempotency_keys_order_id_idx").on(t.orderId)],
);

export type UserRow = typeof users.$inferSelect;
export type ProductRow = typeof products.$inferSelect;
export type OrderRow = typeof orders.$inferSelect;
