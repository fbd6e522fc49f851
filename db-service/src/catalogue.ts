import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { CatalogueService } from "@merch/gen/merch/store/v1/catalogue_pb";
import { ErrorReason, rpcError } from "@merch/kit";
import { and, asc, eq, sql } from "drizzle-orm";
import type { PgUpdateSetSource } from "drizzle-orm/pg-core";
import { productToProto } from "./convert.ts";
import { constraintOf, type Database, sqlState } from "./db.ts";
import { productNotFound } from "./products.ts";
import { type ProductRow, products, stockAdjustments } from "./schema.ts";
import { requireStaff, staffSessionOpen } from "./sessions.ts";
import type { Caller, WriteBatcher } from "./write-batcher.ts";

// The catalogue as staff change it. Every write checks, in its own transaction, that the caller's
// session is open and its account staff, so a revoked role stops the next call on every gateway.

const NAME_KEYS = new Set(["products_name_key", "products_name_lower_key"]);

function nameTaken(err: unknown): never {
  if (sqlState(err) === "23505" && NAME_KEYS.has(constraintOf(err) ?? "")) {
    throw rpcError(ErrorReason.PRODUCT_NAME_TAKEN, "another product already has this name");
  }
  throw err;
}

const entry = (row: ProductRow) => ({ product: productToProto(row), archived: row.archived });

function callerOf(ctx: HandlerContext): Caller {
  const left = ctx.timeoutMs();
  return { signal: ctx.signal, deadline: left === undefined ? Number.POSITIVE_INFINITY : Date.now() + left };
}

export function catalogueService(database: Database, writer: WriteBatcher): ServiceImpl<typeof CatalogueService> {
  return {
    async createProduct(req) {
      const row = await database.run("product.create", (db) =>
        db.transaction(async (tx) => {
          await requireStaff(tx, req.session);
          const [created] = await tx
            .insert(products)
            .values({
              name: req.name,
              description: req.description,
              category: req.category,
              price: req.price,
              slogan: req.slogan,
              stock: req.stock,
            })
            .returning()
            .catch(nameTaken);
          return created;
        }),
      );
      if (!row) throw new Error("insert returned no row");
      return { entry: entry(row) };
    },

    async updateProduct(req) {
      const changes: PgUpdateSetSource<typeof products> = {};
      if (req.name !== undefined) changes.name = req.name;
      if (req.description !== undefined) changes.description = req.description;
      if (req.category !== undefined) changes.category = req.category;
      if (req.price !== undefined) changes.price = req.price;
      if (req.slogan !== undefined) changes.slogan = req.slogan;
      if (req.archived !== undefined) changes.archived = req.archived;
      const row = await database.run("product.update", (db) =>
        db.transaction(async (tx) => {
          await requireStaff(tx, req.session);
          if (Object.keys(changes).length === 0) {
            const [same] = await tx.select().from(products).where(eq(products.id, req.id));
            return same;
          }
          const [updated] = await tx
            .update(products)
            .set(changes)
            .where(eq(products.id, req.id))
            .returning()
            .catch(nameTaken);
          return updated;
        }),
      );
      if (!row) throw productNotFound(req.id);
      return { entry: entry(row) };
    },

    /**
     * The same write path as orders (write-batcher.ts): one conditional UPDATE under the product
     * row's lock, so an adjustment and an order can never both count on the same unit.
     */
    async adjustStock(req, ctx) {
      const { session, id, delta, reason } = req;
      const adjusted = await writer.run(
        "stock.adjust",
        async (tx) => {
          const [product] = await tx
            .update(products)
            .set({ stock: sql`${products.stock} + ${delta}` })
            .where(and(eq(products.id, id), sql`${products.stock} + ${delta} >= 0`, staffSessionOpen(tx, session)))
            .returning();
          if (!product) return undefined;
          await tx.insert(stockAdjustments).values({ productId: id, delta, reason, staffUserId: session?.userId ?? 0 });
          return product;
        },
        callerOf(ctx),
      );
      if (adjusted) return { entry: entry(adjusted) };
      // Why not: the session, the role, the product, or the stock.
      await database.run("session.check", (db) => requireStaff(db, session));
      const [product] = await database.run("product.stock", (db) =>
        db.select({ stock: products.stock }).from(products).where(eq(products.id, id)),
      );
      if (!product) throw productNotFound(id);
      throw rpcError(
        ErrorReason.INSUFFICIENT_STOCK,
        `only ${product.stock} in stock: taking ${-delta} would leave less than none`,
      );
    },

    async listCatalogue(req) {
      const rows = await database.run("product.catalogue", (db) =>
        db.transaction(async (tx) => {
          await requireStaff(tx, req.session);
          return tx.select().from(products).orderBy(asc(products.id));
        }),
      );
      return { entries: rows.map(entry) };
    },
  };
}
