import type { DbClients } from "./clients.ts";
import { productJson } from "./convert.ts";

interface Snapshot {
  takenAt: number;
  /** The whole catalogue as the JSON body of GET /products. */
  list: string;
  /** Each product as the JSON body of GET /products/{id}. */
  byId: Map<number, string>;
}

/**
 * The catalogue as db-service last said, at most `ttlMs` old: product pages are the store's
 * hottest reads and change rarely. Nothing older is ever served (a failed refresh fails the
 * request), and placing an order always checks stock in the database, so a stale stock figure
 * can only make a page look a moment behind, never oversell. ttlMs = 0 turns the cache off.
 */
export class ProductCache {
  readonly #db: DbClients;
  readonly #ttlMs: number;
  readonly #now: () => number;
  #snapshot: Snapshot | undefined;
  #refreshing: Promise<Snapshot> | undefined;

  constructor(db: DbClients, ttlMs: number, now: () => number = Date.now) {
    this.#db = db;
    this.#ttlMs = ttlMs;
    this.#now = now;
  }

  async list(): Promise<string> {
    return (await this.#fresh()).list;
  }

  /** The product's JSON, or undefined when the snapshot does not know the id. */
  async get(id: number): Promise<string | undefined> {
    return (await this.#fresh()).byId.get(id);
  }

  #fresh(): Promise<Snapshot> {
    const now = this.#now();
    if (this.#snapshot && now - this.#snapshot.takenAt < this.#ttlMs) return Promise.resolve(this.#snapshot);
    // One refresh at a time: a burst after expiry waits for the same answer.
    this.#refreshing ??= this.#load(now).finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #load(startedAt: number): Promise<Snapshot> {
    const { products } = await this.#db.products.listProducts({});
    const items = products.map(productJson);
    // Aged from when it was asked for, so the bound holds however long the call took.
    const snapshot: Snapshot = {
      takenAt: startedAt,
      list: JSON.stringify(items),
      byId: new Map(items.map((p) => [p.id, JSON.stringify(p)])),
    };
    if (this.#ttlMs > 0) this.#snapshot = snapshot;
    return snapshot;
  }
}
