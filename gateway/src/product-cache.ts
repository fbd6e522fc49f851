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
 *   (whoever changed it: this gateway, another replica, an operator), within milliseconds;
 * - a write that passes through this gateway applies the product it answers with at once, so a
 *   client sees its own order's stock on its very next read;
 * - while the stream is down, the catalogue is read again whenever it is older than `ttlMs`, and
 *   nothing older is ever served (a failed read fails the request).
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
    if (snapshot && (this.#following || this.#now() - snapshot.takenAt < this.#ttlMs)) return Promise.resolve(snapshot);
    // One read at a time: a burst after expiry waits for the same answer.
    this.#refreshing ??= this.#read().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #read(): Promise<Snapshot> {
    const startedAt = this.#now();
    const { products } = await this.#db.products.listProducts({});
    // Aged from when it was asked for, so the bound holds however long the call took.
    const snapshot = { takenAt: startedAt, byId: entries(products) };
    if (this.#ttlMs > 0 && !this.#following) this.#snapshot = snapshot;
    return snapshot;
  }

  async #watch(): Promise<void> {
    let backoff = RETRY_MIN_MS;
    while (!this.#stop.signal.aborted) {
      try {
        // No deadline: the stream lives as long as the gateway.
        const stream = this.#db.products.watchProducts({}, { signal: this.#stop.signal, timeoutMs: 0 });
        for await (const change of stream) {
          if (change.snapshot) {
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
      // What was heard is now only as good as its age: the TTL takes over from here.
      if (this.#snapshot) this.#snapshot.takenAt = this.#now();
      await sleep(backoff, this.#stop.signal);
      backoff = Math.min(backoff * 2, RETRY_MAX_MS);
    }
    this.#following = false;
  }

  #remove(ids: number[]): void {
    const snapshot = this.#snapshot;
    if (!snapshot || ids.length === 0) return;
    for (const id of ids) snapshot.byId.delete(id);
    snapshot.list = undefined;
  }

  #upsert(product: Product): void {
    const snapshot = this.#snapshot;
    if (!snapshot) return;
    snapshot.byId.set(product.id, { product, json: JSON.stringify(productJson(product)) });
    snapshot.list = undefined;
  }
}

/** The entries by id: a product brought back from the archive goes back in its place. */
function byId(snapshot: Snapshot): Entry[] {
  return [...snapshot.byId.values()].sort((a, b) => a.product.id - b.product.id);
}

function entries(products: Product[]): Map<number, Entry> {
  return new Map(products.map((p) => [p.id, { product: p, json: JSON.stringify(productJson(p)) }]));
}

/** Waits ms, or less when the signal aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return wait(ms, undefined, { signal }).catch(() => {});
}
