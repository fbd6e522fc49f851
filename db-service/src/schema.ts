import { sql } from "drizzle-orm";
import {
  boolean,
  check,
  foreignKey,
  index,
  integer,
  numeric,
  pgTable,
  text,
  timestamp,
  unique,
  uniqueIndex,
  uuid,
  varchar,
} from "drizzle-orm/pg-core";

// The store's tables. This file is the one source of the schema: `npm run db:generate` turns a
// change here into a migration under db-init/migrations, which db-service applies at start-up.
// Constraints carry PostgreSQL's own default names, the names the first databases (made from the
// old db-init/init.sql) have, so the migrations run on those too. Timestamps stay PostgreSQL's
// text so that protobuf gets every microsecond.
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
    // Registration always makes a customer; an operator grants staff (`npm run staff`).
    role: text("role", { enum: ["customer", "staff"] })
      .notNull()
      .default("customer"),
  },
  (t) => [
    uniqueIndex("users_sid_key").on(sql`lower(${t.sid})`),
    uniqueIndex("users_username_key").on(sql`lower(${t.username})`),
    uniqueIndex("users_email_key").on(sql`lower(${t.email})`),
    check("users_sid_format", sql`${t.sid} ~ '^[A-Za-z0-9]{1,15}$'`),
    check("users_username_format", sql`${t.username} ~ '^[A-Za-z0-9_.-]{3,50}$'`),
    check(
      "users_email_format",
      sql`${t.email} ~ '^[A-Za-z0-9.!#$%&''*+/=?^_\`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:[.][A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$'`,
    ),
    check("users_deactivated_consistent", sql`${t.isActive} = (${t.deactivatedAt} IS NULL)`),
    check("users_role_check", sql`${t.role} IN ('customer', 'staff')`),
  ],
);

export const products = pgTable(
  "products",
  {
    id: integer("id").primaryKey().generatedByDefaultAsIdentity(),
    name: varchar("name", { length: 100 }).notNull(),
    description: text("description").notNull().default(""),
    category: varchar("category", { length: 50 }).notNull(),
    price: numeric("price", { precision: 10, scale: 2 }).notNull(),
    slogan: text("slogan").notNull().default(""),
    stock: integer("stock").notNull(),
    createdAt: timestamptz("created_at").notNull().defaultNow(),
    // Hidden from customers (not listed, not found by id, not orderable); kept for its orders.
    archived: boolean("archived").notNull().default(false),
  },
  (t) => [
    unique("products_name_key").on(t.name),
    // Staff cannot add "sustech hoodie" beside "SUSTech Hoodie".
    uniqueIndex("products_name_lower_key").on(sql`lower(${t.name})`),
    check("products_price_check", sql`${t.price} >= 0`),
    check("products_stock_check", sql`${t.stock} >= 0`),
  ],
);

export const orders = pgTable(
  "orders",
  {
    id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
    userId: integer("user_id").notNull(),
    productId: integer("product_id").notNull(),
    quantity: integer("quantity").notNull(),
    unitPrice: numeric("unit_price", { precision: 10, scale: 2 }).notNull(),
    totalPrice: numeric("total_price", { precision: 10, scale: 2 })
      .notNull()
      .generatedAlwaysAs(sql`unit_price * quantity`),
    status: text("status", { enum: ["placed", "ready", "collected", "cancelled"] })
      .notNull()
      .default("placed"),
    createdAt: timestamptz("created_at").notNull().defaultNow(),
    cancelledAt: timestamptz("cancelled_at"),
    // When staff marked it ready at the pick-up desk, and when it was handed over.
    readyAt: timestamptz("ready_at"),
    collectedAt: timestamptz("collected_at"),
    // What makes a repeat of the request answer this order: the client's Idempotency-Key, or
    // one the gateway made up. Claimed by the INSERT that places the order, so a key costs no
    // statement of its own.
    idempotencyKey: varchar("idempotency_key", { length: 255 }),
  },
  (t) => [
    foreignKey({ name: "orders_user_id_fkey", columns: [t.userId], foreignColumns: [users.id] }),
    foreignKey({ name: "orders_product_id_fkey", columns: [t.productId], foreignColumns: [products.id] }),
    // DESC alone means NULLS FIRST in PostgreSQL, as the first databases have it.
    index("orders_user_id_id_idx").on(t.userId, t.id.desc().nullsFirst()),
    index("orders_product_id_idx").on(t.productId),
    check("orders_quantity_check", sql`${t.quantity} BETWEEN 1 AND 3`),
    check("orders_unit_price_check", sql`${t.unitPrice} >= 0`),
    check("orders_status_check", sql`${t.status} IN ('placed', 'ready', 'collected', 'cancelled')`),
    check("orders_ready_consistent", sql`${t.status} NOT IN ('ready', 'collected') OR ${t.readyAt} IS NOT NULL`),
    check("orders_collected_consistent", sql`(${t.status} = 'collected') = (${t.collectedAt} IS NOT NULL)`),
    // Staff list everyone's orders newest first, of one status or one product.
    index("orders_status_id_idx").on(t.status, t.id.desc().nullsFirst()),
    check("orders_cancelled_consistent", sql`(${t.status} = 'cancelled') = (${t.cancelledAt} IS NOT NULL)`),
    check("orders_idempotency_key_format", sql`${t.idempotencyKey} ~ '^[ -~]{1,255}$'`),
    uniqueIndex("orders_user_id_idempotency_key_key").on(t.userId, t.idempotencyKey),
  ],
);

/** Every change of stock made by staff, with who made it and why: orders are their own record. */
export const stockAdjustments = pgTable(
  "stock_adjustments",
  {
    id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
    productId: integer("product_id").notNull(),
    delta: integer("delta").notNull(),
    reason: varchar("reason", { length: 200 }).notNull(),
    staffUserId: integer("staff_user_id").notNull(),
    createdAt: timestamptz("created_at").notNull().defaultNow(),
  },
  (t) => [
    foreignKey({
      name: "stock_adjustments_product_id_fkey",
      columns: [t.productId],
      foreignColumns: [products.id],
    }),
    foreignKey({
      name: "stock_adjustments_staff_user_id_fkey",
      columns: [t.staffUserId],
      foreignColumns: [users.id],
    }),
    index("stock_adjustments_product_id_idx").on(t.productId),
    check("stock_adjustments_delta_check", sql`${t.delta} <> 0`),
  ],
);

/**
 * One row per login: the token's jti is the id. A token works while its session is open; logout,
 * a password change and deactivation end sessions, and a database reset removes them all, so an
 * old token can never name a new account.
 */
export const sessions = pgTable(
  "sessions",
  {
    id: uuid("id").primaryKey(),
    userId: integer("user_id").notNull(),
    createdAt: timestamptz("created_at").notNull().defaultNow(),
    expiresAt: timestamptz("expires_at").notNull(),
    endedAt: timestamptz("ended_at"),
  },
  (t) => [
    foreignKey({ name: "sessions_user_id_fkey", columns: [t.userId], foreignColumns: [users.id] }),
    index("sessions_user_id_idx").on(t.userId),
    index("sessions_expires_at_idx").on(t.expiresAt),
  ],
);

/**
 * Counters of attempts per key ("login:account:7", "login:address:10.0.0.1", ...) in fixed
 * windows, shared by every gateway and db-service replica. Swept once their window has ended.
 */
export const throttle = pgTable(
  "throttle",
  {
    key: text("key").primaryKey(),
    hits: integer("hits").notNull(),
    windowEnds: timestamptz("window_ends").notNull(),
  },
  (t) => [index("throttle_window_ends_idx").on(t.windowEnds)],
);

export type UserRow = typeof users.$inferSelect;
export type ProductRow = typeof products.$inferSelect;
export type OrderRow = typeof orders.$inferSelect;
