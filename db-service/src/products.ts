import type { ServiceImpl } from "@connectrpc/connect";
import type { Product, ProductService } from "@merch/gen/merch/store/v1/product_pb";
import type { Logger } from "@merch/kit";
import { ErrorReason, rpcError } from "@merch/kit";
import { and, asc, eq, sql } from "drizzle-orm";
import { productToProto } from "./convert.ts";
import { type Database, type Db, databaseUnavailable } from "./db.ts";
import { products } from "./schema.ts";

export const productNotFound = (id: number) => rpcError(ErrorReason.PRODUCT_NOT_FOUND, `product ${id} does not exist`);

/**
 * The channel the products triggers notify (migration 0001): the ids that changed, or `*` when
 * any product may have changed (a DELETE or TRUNCATE, migration 0004; a migration or db:reset,
 * applyMigrations).
 */
const CHANNEL = "products_changed";
const EVERYTHING = "*";

interface Listener {
  /** `removed`: ids of products that left the catalogue (archived). */
  change(products: Product[], snapshot: boolean, removed: number[]): void;
  /** The feed can no longer keep this listener up to date (the database went away). */
  lost(): void;
}

/** The changed products' query, built once per pool: every batch of orders that takes stock loads them. */
const changedQueries = new WeakMap<Db, ReturnType<typeof buildChangedQuery>>();
const buildChangedQuery = (db: Db) =>
  db
    .select()
    .from(products)
    .where(sql`${products.id} = ANY(${sql.placeholder("ids")}::int4[])`)
    .prepare("product_changed");

function changedQuery(db: Db): ReturnType<typeof buildChangedQuery> {
  let query = changedQueries.get(db);
  if (query === undefined) {
    query = buildChangedQuery(db);
    changedQueries.set(db, query);
  }
  return query;
}

/**
 * Hears from PostgreSQL which products changed (LISTEN; the triggers of migration 0001 NOTIFY at
 * commit, whoever wrote) and passes the changed products to every watcher. Changes that arrive
 * together are loaded together. When the database goes away, notifications can no longer arrive,
 * so every watcher is told at once (its stream ends with UNAVAILABLE and the watcher falls back on
 * reading); a new watch starts with a fresh snapshot.
 */
export class ProductFeed {
  readonly #database: Database;
  readonly #logger: Logger;
  readonly #listeners = new Set<Listener>();
  #pending = new Set<number>();
  /** A `*` arrived: the next load sends the whole catalogue as a snapshot. */
  #resync = false;
  #loading = false;
  #unlisten: (() => Promise<void>) | undefined;

  constructor(database: Database, logger: Logger) {
    this.#database = database;
    this.#logger = logger;
    database.onChange((up) => {
      if (up) {
        void this.#listen();
        return;
      }
      this.#unlisten = undefined;
      for (const listener of this.#listeners) listener.lost();
    });
  }

  async start(): Promise<void> {
    if (this.#database.up) await this.#listen();
  }

  async close(): Promise<void> {
    await this.#unlisten?.().catch(() => {});
  }

  /** Calls the listener with each change until the returned function is called. */
  subscribe(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async snapshot(): Promise<Product[]> {
    const rows = await this.#database.run("product.snapshot", (db) =>
      db.select().from(products).where(eq(products.archived, false)).orderBy(asc(products.id)),
    );
    return rows.map(productToProto);
  }

  async #listen(): Promise<void> {
    try {
      const { unlisten } = await this.#database.sql.listen(CHANNEL, (payload) => this.#changed(payload));
      this.#unlisten = unlisten;
    } catch (err) {
      // The database went away again; its return calls us back.
      this.#logger.warn({ err: String(err) }, "could not listen for product changes");
    }
  }

  #changed(payload: string): void {
    if (payload === EVERYTHING) this.#resync = true;
    for (const id of payload.split(",")) if (/^[0-9]+$/.test(id)) this.#pending.add(Number(id));
    if (!this.#loading) void this.#load();
  }

  async #load(): Promise<void> {
    this.#loading = true;
    try {
      while (this.#pending.size > 0 || this.#resync) {
        if (this.#resync) {
          // The whole catalogue covers whatever ids were pending too.
          this.#resync = false;
          this.#pending = new Set();
          if (this.#listeners.size === 0) continue;
          const all = await this.snapshot();
          for (const listener of this.#listeners) listener.change(all, true, []);
          continue;
        }
        const ids = [...this.#pending];
        this.#pending = new Set();
        if (this.#listeners.size === 0) continue;
        const rows = await this.#database.run("product.changed", (db) => changedQuery(db).execute({ ids }));
        const changed = rows.filter((r) => !r.archived).map(productToProto);
        const removed = rows.filter((r) => r.archived).map((r) => r.id);
        for (const listener of this.#listeners) listener.change(changed, false, removed);
      }
    } catch (err) {
      this.#logger.warn({ err: String(err) }, "could not load changed products");
    } finally {
      this.#loading = false;
    }
  }
}

export function productService(database: Database, feed: ProductFeed): ServiceImpl<typeof ProductService> {
  return {
    async listProducts() {
      const rows = await database.run("product.list", (db) =>
        db.select().from(products).where(eq(products.archived, false)).orderBy(asc(products.id)),
      );
      return { products: rows.map(productToProto) };
    },

    async getProduct(req) {
      const [row] = await database.run("product.get", (db) =>
        db
          .select()
          .from(products)
          .where(and(eq(products.id, req.id), eq(products.archived, false))),
      );
      if (!row) throw productNotFound(req.id);
      return { product: productToProto(row) };
    },

    async *watchProducts(_req, ctx) {
      // Subscribed before the snapshot is read, so no change can fall between the two.
      const queue: { products: Product[]; snapshot: boolean; removedIds: number[] }[] = [];
      let wake: (() => void) | undefined;
      let lost = false;
      const unsubscribe = feed.subscribe({
        change(changed, snapshot, removedIds) {
          queue.push({ products: changed, snapshot, removedIds });
          wake?.();
        },
        lost() {
          lost = true;
          wake?.();
        },
      });
      const stop = () => wake?.();
      ctx.signal.addEventListener("abort", stop);
      try {
        yield { products: await feed.snapshot(), snapshot: true, removedIds: [] };
        while (!ctx.signal.aborted) {
          if (lost) throw databaseUnavailable();
          const next = queue.shift();
          if (next) {
            yield next;
            continue;
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
        }
      } finally {
        unsubscribe();
        ctx.signal.removeEventListener("abort", stop);
      }
    },
  };
}
