import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { PlaceOrderRequestSchema, PlaceOrderResponse } from "@merch/gen/merch/store/v1/order_pb";
import type { Product } from "@merch/gen/merch/store/v1/product_pb";
import {
  context,
  ErrorReason,
  endSpan,
  isExporting,
  type Link,
  refusalError,
  rpcError,
  type Span,
  trace,
  tracer,
} from "@merch/kit";
import type { DbClients } from "./clients.ts";

type OrderInit = MessageInitShape<typeof PlaceOrderRequestSchema>;

/** One order waiting for its batch. */
interface Waiting {
  request: OrderInit;
  /** performance.now() past which the order must not be sent. */
  deadline: number;
  /** The span of the request that placed it, to link the batch to (when tracing). */
  span: Span | undefined;
  resolve(res: PlaceOrderResponse): void;
  reject(err: unknown): void;
}

export interface OrderBatcherOptions {
  /** Orders per PlaceOrders call at most (db-service takes up to 128). */
  maxBatch?: number;
  /** PlaceOrders calls in flight at once; orders arriving meanwhile form the next batch. */
  maxInFlight?: number;
  /** Each order's deadline, from when it is asked for. */
  timeoutMs: number;
}

const tooBusy = () =>
  rpcError(ErrorReason.SERVICE_UNAVAILABLE, "the store is too busy right now; nothing was changed, retry shortly", {
    retryAfterS: 1,
  });

/**
 * Carries the gateway's orders to db-service several at a time, in one PlaceOrders call each.
 * A call per order cost the gateway more than anything else it does for an order (the Connect
 * client, an HTTP/2 stream, protobuf, an AbortController and the garbage they all leave), and
 * db-service as much again; a batch pays that once. db-service places a batch's orders exactly
 * as it would place them one by one (they join one write batch anyway) and answers each, so a
 * caller of place() sees what a PlaceOrder call would have given it.
 *
 * Batches form the way group commit does: an order that finds a call slot free goes out at the
 * end of the current turn of the event loop with whatever else arrived in it; orders that arrive
 * while every slot is busy wait for the next free one and go together. Under no load an order
 * waits for nothing; under load batches grow with it.
 */
export class OrderBatcher {
  readonly #orders: DbClients["orders"];
  readonly #maxBatch: number;
  readonly #maxInFlight: number;
  readonly #timeoutMs: number;
  #pending: Waiting[] = [];
  #inFlight = 0;
  #scheduled = false;

  constructor(orders: DbClients["orders"], options: OrderBatcherOptions) {
    this.#orders = orders;
    this.#maxBatch = options.maxBatch ?? 64;
    this.#maxInFlight = options.maxInFlight ?? 8;
    this.#timeoutMs = options.timeoutMs;
  }

  /** Orders waiting for a batch (not yet sent). */
  waiting(): number {
    return this.#pending.length;
  }

  place(request: OrderInit): Promise<PlaceOrderResponse> {
    return new Promise((resolve, reject) => {
      this.#pending.push({
        request,
        deadline: performance.now() + this.#timeoutMs,
        span: isExporting() ? trace.getActiveSpan() : undefined,
        resolve,
        reject,
      });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#inFlight >= this.#maxInFlight || this.#pending.length === 0) return;
    this.#scheduled = true;
    // The batch leaves once this turn of the event loop has parsed what it could: the orders of
    // every request read in the same turn go together.
    setImmediate(() => {
      this.#scheduled = false;
      this.#flush();
    });
  }

  #flush(): void {
    while (this.#inFlight < this.#maxInFlight && this.#pending.length > 0) {
      const now = performance.now();
      const batch: Waiting[] = [];
      while (batch.length < this.#maxBatch && this.#pending.length > 0) {
        const next = this.#pending.shift() as Waiting;
        // Its time ran out while it waited: it was never sent, so nothing changed.
        if (next.deadline - now < 1) next.reject(tooBusy());
        else batch.push(next);
      }
      if (batch.length === 0) continue;
      this.#inFlight++;
      void this.#send(batch).finally(() => {
        this.#inFlight--;
        this.#schedule();
      });
    }
  }

  async #send(batch: Waiting[]): Promise<void> {
    // The batch serves many requests: it is no one request's child. When tracing, it is a span
    // of its own linked to each request's span, and each request's span links back to it.
    const links: Link[] = [];
    for (const w of batch) if (w.span) links.push({ context: w.span.spanContext() });
    const span =
      links.length > 0
        ? tracer().startSpan("gateway order batch", { root: true, links, attributes: { "merch.orders": batch.length } })
        : undefined;
    if (span) for (const w of batch) w.span?.addLink({ context: span.spanContext() });
    const base = trace.deleteSpan(context.active());
    const timeoutMs = Math.max(1, Math.floor(Math.min(...batch.map((w) => w.deadline)) - performance.now()));
    try {
      const { results, products } = await context.with(span ? trace.setSpan(base, span) : base, () =>
        this.#orders.placeOrders({ orders: batch.map((w) => w.request) }, { timeoutMs }),
      );
      if (results.length !== batch.length) throw new Error("db-service answered a batch with the wrong count");
      // Each product comes once for the whole call, as its last placed order left it: every
      // placed order answers with it, as PlaceOrder answers with the product it left.
      const byId = new Map<number, Product>();
      for (const product of products) byId.set(product.id, product);
      batch.forEach((w, i) => {
        const result = results[i]?.result;
        if (result?.case === "placed") {
          const placed = result.value;
          if (placed.product === undefined && placed.order && !placed.replayed) {
            placed.product = byId.get(placed.order.productId);
          }
          w.resolve(placed);
        } else if (result?.case === "refused") w.reject(refusalError(result.value));
        else w.reject(new Error("db-service sent an empty result"));
      });
      span?.end();
    } catch (err) {
      if (span) endSpan(span, err);
      // A request db-service refused as a whole for its form: one order in it was invalid. Each
      // order then goes alone, so only the invalid one hears about it.
      if (batch.length > 1 && err instanceof ConnectError && err.code === Code.InvalidArgument) {
        await Promise.all(batch.map((w) => this.#alone(w)));
        return;
      }
      for (const w of batch) w.reject(err);
    }
  }

  async #alone(w: Waiting): Promise<void> {
    const timeoutMs = Math.floor(w.deadline - performance.now());
    if (timeoutMs < 1) return w.reject(tooBusy());
    try {
      w.resolve(await this.#orders.placeOrder(w.request, { timeoutMs }));
    } catch (err) {
      w.reject(err);
    }
  }
}
