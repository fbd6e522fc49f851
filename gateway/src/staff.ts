import type { CatalogueEntry } from "@merch/gen/merch/store/v1/catalogue_pb";
import { type Order, OrderStatus } from "@merch/gen/merch/store/v1/order_pb";
import type { Product } from "@merch/gen/merch/store/v1/product_pb";
import type { DbClients } from "./clients.ts";
import type { EventInput, EventLog } from "./event-log.ts";
import type { ProductCache } from "./product-cache.ts";
import { publicError } from "./refusals.ts";
import type { Authenticated } from "./store.ts";

// Running the shop: the staff operations, written once like Store's. The REST routes
// (rest/staff.ts) and ShopService's staff methods (shop-staff.ts) are thin adapters to these.
// db-service checks the caller's role in the statement that does the work, so a revoked role
// or a deactivated staff account is refused on the very next call, on every gateway.

export interface NewProduct {
  name: string;
  description?: string | undefined;
  category: string;
  price: string;
  slogan?: string | undefined;
  stock?: number | undefined;
}

export interface ProductChanges {
  name?: string | undefined;
  description?: string | undefined;
  category?: string | undefined;
  price?: string | undefined;
  slogan?: string | undefined;
  archived?: boolean | undefined;
}

export interface OrderFilter {
  pageSize: number;
  pageToken: string;
  /** placed, ready, collected or cancelled; undefined for all. */
  status?: OrderStatus | undefined;
  productId?: number | undefined;
}

export const STATUS_BY_NAME: Record<string, OrderStatus> = {
  placed: OrderStatus.PLACED,
  ready: OrderStatus.READY,
  collected: OrderStatus.COLLECTED,
  cancelled: OrderStatus.CANCELLED,
};

export interface StaffDeskDeps {
  db: DbClients;
  events: EventLog;
  products: ProductCache;
}

export class StaffDesk {
  readonly #d: StaffDeskDeps;

  constructor(deps: StaffDeskDeps) {
    this.#d = deps;
  }

  async #call<T>(write: boolean, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw publicError(err, write);
    }
  }

  /** Every staff action is an event naming the staff user (the event's user). */
  #emit(auth: Authenticated, event: string, message: string, attributes: Record<string, string>): void {
    const input: EventInput = {
      level: "info",
      event,
      message,
      requestId: auth.requestId,
      userId: auth.subject.userId,
      attributes: { ...attributes, staff_user_id: String(auth.subject.userId) },
    };
    this.#d.events.emit(input);
  }

  #session(auth: Authenticated) {
    return { userId: auth.subject.userId, sessionId: auth.subject.sessionId };
  }

  /** The product a staff write answered with, applied to the pages at once. */
  #applied(entry: CatalogueEntry | undefined): Product {
    if (!entry?.product) throw new Error("db-service sent no product");
    this.#d.products.applyCatalogue(entry.product, entry.archived);
    return entry.product;
  }

  async createProduct(auth: Authenticated, req: NewProduct): Promise<Product> {
    const { entry } = await this.#call(true, () =>
      this.#d.db.catalogue.createProduct({
        session: this.#session(auth),
        name: req.name,
        description: req.description ?? "",
        category: req.category,
        price: req.price,
        slogan: req.slogan ?? "",
        stock: req.stock ?? 0,
      }),
    );
    const product = this.#applied(entry);
    this.#emit(auth, "product.created", "product created", {
      product_id: String(product.id),
      name: product.name,
      price: product.price,
      stock: String(product.stock),
    });
    return product;
  }

  async updateProduct(auth: Authenticated, id: number, changes: ProductChanges): Promise<Product> {
    const { entry } = await this.#call(true, () =>
      this.#d.db.catalogue.updateProduct({ session: this.#session(auth), id, ...defined(changes) }),
    );
    const product = this.#applied(entry);
    const fields = Object.keys(defined(changes));
    this.#emit(auth, "product.updated", "product updated", {
      product_id: String(product.id),
      fields: fields.join(","),
      ...(changes.price === undefined ? {} : { price: product.price }),
      ...(changes.archived === undefined ? {} : { archived: String(changes.archived) }),
    });
    return product;
  }

  async adjustStock(auth: Authenticated, id: number, delta: number, reason: string): Promise<Product> {
    const { entry } = await this.#call(true, () =>
      this.#d.db.catalogue.adjustStock({ session: this.#session(auth), id, delta, reason }),
    );
    const product = this.#applied(entry);
    this.#emit(auth, "stock.adjusted", "stock adjusted", {
      product_id: String(product.id),
      delta: String(delta),
      reason,
      stock: String(product.stock),
    });
    return product;
  }

  async listCatalogue(auth: Authenticated): Promise<CatalogueEntry[]> {
    const { entries } = await this.#call(false, () =>
      this.#d.db.catalogue.listCatalogue({ session: this.#session(auth) }),
    );
    return entries;
  }

  async listAllOrders(auth: Authenticated, filter: OrderFilter): Promise<{ orders: Order[]; nextPageToken: string }> {
    return this.#call(false, () =>
      this.#d.db.orders.listAllOrders({
        session: this.#session(auth),
        pageSize: filter.pageSize,
        pageToken: filter.pageToken,
        status: filter.status ?? OrderStatus.UNSPECIFIED,
        productId: filter.productId ?? 0,
      }),
    );
  }

  async markReady(auth: Authenticated, id: number): Promise<Order> {
    const { order } = await this.#call(true, () =>
      this.#d.db.orders.markOrderReady({ session: this.#session(auth), orderId: id }),
    );
    if (!order) throw new Error("db-service sent no order");
    this.#emit(auth, "order.ready", "order ready for collection", orderFacts(order));
    return order;
  }

  async markCollected(auth: Authenticated, id: number): Promise<Order> {
    const { order } = await this.#call(true, () =>
      this.#d.db.orders.markOrderCollected({ session: this.#session(auth), orderId: id }),
    );
    if (!order) throw new Error("db-service sent no order");
    this.#emit(auth, "order.collected", "order collected", orderFacts(order));
    return order;
  }
}

export function orderFacts(order: Order): Record<string, string> {
  return {
    order_id: String(order.id),
    customer_user_id: String(order.userId),
    product_id: String(order.productId),
    quantity: String(order.quantity),
  };
}

/** The fields that were given: undefined ones are no change. */
function defined<T extends object>(changes: T): Partial<T> {
  return Object.fromEntries(Object.entries(changes).filter(([, v]) => v !== undefined)) as Partial<T>;
}
