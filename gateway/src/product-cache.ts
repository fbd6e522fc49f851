import { setTimeout as wait } from "node:timers/promises";
import type { Product } from "@merch/gen/merch/store/v1/product_pb";
import type { Logger } from "@merch/kit";
import type { DbClients } from "./clients.ts";
import { productJson } from "./convert.ts";

interface Entry {
  product: Product;
  /** The JSON body of GET /products/{id}, made once per change. */
  json: string;
}

interface Snapshot {
  takenAt: number;
  byId: Map<number, Entry>;
  /** The JSON body of GET /products, made when first asked for. */
  list?: string;
}

const RETRY_MIN_MS = 200;
const RETRY_MAX_MS = 5000;

/**
 * The catalogue, as db-service last said. Product pages are the store's hottest reads and change
 * only when stock moves, so the gateway keeps them and hears of every change:
 *
 * - it follows db-service's WatchProducts stream, which sends each product again when it changes
 *   (whoever changed it: this gateway, another replica, an operator), within milliseconds, and the
 *   whole catalogue again after a reset, a migration, a DELETE or a TRUNCATE;
 * - a write that passes through this gateway applies the product it answers with at once, so a
 *   client sees its own order's stock on its very next read;
 * - whatever the stream says, nothing older than `ttlMs` is ever served: the catalogue is read
 *   again in the background once half of that has passed (while the stream follows, so no request
 *   waits) or before answering (while it is down; a failed read fails the request). That bounds
 *   changes no trigger announces, too: a restore, SQL run with triggers disabled.
 *
 * Placing an order always checks stock in the database, so a page a moment behind can never
 * oversell. ttlMs = 0 turns the cache off: every read goes to db-service.
 */
export class ProductCache {
  readonly #db: DbClients;
  readonly #ttlMs: number;
  readonly #logger: Logger;
  readonly #now: () => number;
  #snapshot: Snapshot | undefined;
  #refreshing: Promise<Snapshot> | undefined;
  /** True while the watch stream is open and has delivered its snapshot. */
  #following = false;
  /** Counts the stream's snapshots: a read that one overtook is dropped. */
  #snapshots = 0;
  /** Products heard (from the stream or a write; undefined: removed) while a read is in flight, laid over its answer. */
  #heard: Map<number, Product | undefined> | undefined;
  readonly #stop = new AbortController();
  #watching: Promise<void> = Promise.resolve();

  constructor(db: DbClients, ttlMs: number, logger: Logger, now: () => number = Date.now) {
    this.#db = db;
    this.#ttlMs = ttlMs;
    this.#logger = logger;
    this.#now = now;
  }

  /** Starts following db-service's changes (not with ttlMs = 0: then nothing is kept). */
  start(): void {
    if (this.#ttlMs > 0) this.#watching = this.#watch();
  }

  async close(): Promise<void> {
    this.#stop.abort();
    await this.#watching;
  }

  /** Whether pages come from the followed stream (else from reads at most ttlMs old). */
  get following(): boolean {
    return this.#following;
  }

  async list(): Promise<Product[]> {
    return byId(await this.#fresh()).map((e) => e.product);
  }

  async listJson(): Promise<string> {
    const snapshot = await this.#fresh();
    snapshot.list ??= JSON.stringify(byId(snapshot).map((e) => productJson(e.product)));
    return snapshot.list;
  }

  /** The product, or undefined when the catalogue does not know the id. */
  async get(id: number): Promise<Product | undefined> {
    return (await this.#fresh()).byId.get(id)?.product;
  }

  async getJson(id: number): Promise<string | undefined> {
    return (await this.#fresh()).byId.get(id)?.json;
  }

  /** A product as a write just left it: applied at once, for the writer's next read. */
  apply(product: Product): void {
    if (this.#snapshot?.byId.has(product.id)) this.#upsert(product);
  }

  /**
   * A product as staff just left it: added (a new one, or one brought back) or, once archived,
   * dropped from the pages at once.
   */
  applyCatalogue(product: Product, archived: boolean): void {
    if (archived) this.#remove([product.id]);
    else this.#upsert(product);
  }

  #fresh(): Promise<Snapshot> {
    const snapshot = this.#snapshot;
    if (snapshot) {
      const age = this.#now() - snapshot.takenAt;
      if (age < this.#ttlMs) {
        // The stream misses what no trigger announces: read again before the bound is reached.
        if (this.#following && age >= this.#ttlMs / 2) this.#refresh().catch(() => {});
        return Promise.resolve(snapshot);
      }
    }
    return this.#refresh();
  }

  /** One read at a time: a burst after expiry waits for the same answer. */
  #refresh(): Promise<Snapshot> {
    this.#refreshing ??= this.#read().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #read(): Promise<Snapshot> {
    const startedAt = this.#now();
    const snapshots = this.#snapshots;
    const heard = new Map<number, Product | undefined>();
    this.#heard = heard;
    try {
      const { products } = await this.#db.products.listProducts({});
      // Aged from when it was asked for, so the bound holds however long the call took.
      const snapshot = { takenAt: startedAt, byId: entries(products) };
      // What the stream or a write said meanwhile is at least as new as this answer for its
      // product (a later change would follow on the stream).
      for (const [id, product] of heard) {
        if (product === undefined) snapshot.byId.delete(id);
        else snapshot.byId.set(id, entry(product));
      }
      if (this.#ttlMs === 0) return snapshot;
      if (this.#snapshots === snapshots) this.#snapshot = snapshot;
      return this.#snapshot ?? snapshot;
    } finally {
      this.#heard = undefined;
    }
  }

  async #watch(): Promise<void> {
    let backoff = RETRY_MIN_MS;
    while (!this.#stop.signal.aborted) {
      try {
        // No deadline: the stream lives as long as the gateway.
        const stream = this.#db.products.watchProducts({}, { signal: this.#stop.signal, timeoutMs: 0 });
        for await (const change of stream) {
          if (change.snapshot) {
            this.#snapshots++;
            this.#snapshot = { takenAt: this.#now(), byId: entries(change.products) };
            if (!this.#following) this.#logger.info("following db-service's product changes");
            this.#following = true;
            backoff = RETRY_MIN_MS;
          } else {
            for (const product of change.products) this.#upsert(product);
            this.#remove(change.removedIds);
          }
        }
      } catch (err) {
        if (this.#stop.signal.aborted) break;
        this.#logger.debug({ err: String(err), retryInMs: backoff }, "product watch failed");
      }
      if (this.#following) this.#logger.warn("lost db-service's product changes: pages now age up to the TTL");
      this.#following = false;
      await sleep(backoff, this.#stop.signal);
      backoff = Math.min(backoff * 2, RETRY_MAX_MS);
    }
    this.#following = false;
  }

  #remove(ids: number[]): void {
    for (const id of ids) this.#heard?.set(id, undefined);
    const snapshot = this.#snapshot;
    if (!snapshot || ids.length === 0) return;
    for (const id of ids) snapshot.byId.delete(id);
    snapshot.list = undefined;
  }

  #upsert(product: Product): void {
    this.#heard?.set(product.id, product);
    const snapshot = this.#snapshot;
    if (!snapshot) return;
    // The orders of one PlaceOrders call share their product's answer: it is rendered once.
    if (snapshot.byId.get(product.id)?.product === product) return;
    snapshot.byId.set(product.id, entry(product));
    snapshot.list = undefined;
  }
}

function entry(product: Product): Entry {
  return { product, json: JSON.stringify(productJson(product)) };
}

/** The entries by id: a product brought back from the archive goes back in its place. */
function byId(snapshot: Snapshot): Entry[] {
  return [...snapshot.byId.values()].sort((a, b) => a.product.id - b.product.id);
}

function entries(products: Product[]): Map<number, Entry> {
  return new Map(products.map((p) => [p.id, entry(p)]));
}

/** Waits ms, or less when the signal aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return wait(ms, undefined, { signal }).catch(() => {});
}
