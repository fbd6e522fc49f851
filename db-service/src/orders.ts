import type { MessageInitShape } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  type OrderService,
  OrderStatus,
  type PlaceOrderRequest,
  type PlaceOrderResponseSchema,
} from "@merch/gen/merch/store/v1/order_pb";
import type { Session } from "@merch/gen/merch/store/v1/session_pb";
import { carryRefusal, ErrorReason, invalidArgument, type Logger, logFailure, rpcError } from "@merch/kit";
import { and, desc, eq, inArray, lt, or, sql } from "drizzle-orm";
import { orderToProto, productToProto } from "./convert.ts";
import { constraintOf, type Database, type Db, sqlState, toConnectError } from "./db.ts";
import { OrderBatch, type OrderOutcome } from "./order-batch.ts";
import { productNotFound } from "./products.ts";
import { type OrderRow, orders, type ProductRow, products } from "./schema.ts";
import { requireSession, requireStaff, sessionEnded, sessionOpen, staffSessionOpen } from "./sessions.ts";
import type { Caller, Tx, WriteBatcher } from "./write-batcher.ts";

const DEFAULT_PAGE_SIZE = 20;
const PLACE_ORDERS = "/merch.store.v1.OrderService/PlaceOrders";
const MAX_ID = 2_147_483_647;

const orderNotFound = (id: number) => rpcError(ErrorReason.ORDER_NOT_FOUND, `order ${id} does not exist`);

type Status = OrderRow["status"];

/** The moves staff make at the pick-up desk: to each status, the one it may come from. */
const HAND_OVER = {
  ready: { from: "placed", stamp: "readyAt" },
  collected: { from: "ready", stamp: "collectedAt" },
} as const;

const invalidTransition = (id: number, status: Status, to: Status | "cancelled") =>
  rpcError(ErrorReason.INVALID_TRANSITION, `order ${id} is ${status}: it cannot become ${to}`);

const STATUS_NAMES: Record<number, Status | undefined> = {
  [OrderStatus.PLACED]: "placed",
  [OrderStatus.READY]: "ready",
  [OrderStatus.COLLECTED]: "collected",
  [OrderStatus.CANCELLED]: "cancelled",
};

function encodePageToken(lastId: number): string {
  return Buffer.from(JSON.stringify({ before: lastId })).toString("base64url");
}

function decodePageToken(token: string): number | undefined {
  try {
    const { before } = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { before?: unknown };
    return typeof before === "number" && Number.isInteger(before) && before > 0 && before <= MAX_ID
      ? before
      : undefined;
  } catch {
    return undefined;
  }
}

/** The caller of a write, from its Connect context: its signal and its deadline. */
/** One page of a list read with `limit(size + 1)`: the extra row only says that more follow. */
function pageOf(rows: OrderRow[], size: number) {
  const more = rows.length > size;
  const items = more ? rows.slice(0, size) : rows;
  const last = items.at(-1);
  return { orders: items.map(orderToProto), nextPageToken: more && last ? encodePageToken(last.id) : "" };
}

/** One order's answer, and the product as it left it when it was placed now. */
interface Placed {
  response: MessageInitShape<typeof PlaceOrderResponseSchema>;
  product: ProductRow | undefined;
}

function callerOf(ctx: HandlerContext): Caller {
  const left = ctx.timeoutMs();
  return { signal: ctx.signal, deadline: left === undefined ? Number.POSITIVE_INFINITY : Date.now() + left };
}

/** The caller's order with this key, if any: what a repeat of its request answers. */
function priorOrder(db: Db | Tx, userId: number, key: string) {
  return db
    .select()
    .from(orders)
    .where(and(eq(orders.userId, userId), eq(orders.idempotencyKey, key)));
}

/** A placed order repeated with its key, or a key used for another request. */
function replayOf(prior: OrderRow, productId: number, quantity: number) {
  if (prior.productId !== productId || prior.quantity !== quantity) {
    throw rpcError(
      ErrorReason.IDEMPOTENCY_KEY_REUSED,
      "this Idempotency-Key was already used with a different request",
    );
  }
  return { order: orderToProto(prior), replayed: true };
}

export function orderService(
  database: Database,
  writer: WriteBatcher,
  logger: Logger,
): ServiceImpl<typeof OrderService> {
  /** A placed order repeated with its key, or a key used for another request. */
  async function replay(userId: number, key: string, productId: number, quantity: number) {
    const [prior] = await database.run("order.replay", (db) => priorOrder(db, userId, key));
    return prior && replayOf(prior, productId, quantity);
  }

  /** The session's order, or why there is none to the caller. */
  async function ownOrder(session: Session | undefined, orderId: number) {
    const userId = session?.userId ?? 0;
    const [row] = await database.run("order.get", (db) =>
      db
        .select()
        .from(orders)
        .where(and(eq(orders.id, orderId), eq(orders.userId, userId), sessionOpen(db, session))),
    );
    if (row) return row;
    await database.run("session.check", (db) => requireSession(db, session));
    throw orderNotFound(orderId);
  }

  /**
   * Places one order: its answer, without its product, and the product as the order left it
   * (when it was placed now), which PlaceOrder answers with each order and PlaceOrders once per
   * product for the whole call.
   */
  async function place(req: PlaceOrderRequest, caller: Caller): Promise<Placed> {
    const { session, productId, quantity } = req;
    const userId = session?.userId ?? 0;
    // Without a key from the caller the order still gets one, so that a batch run again can
    // never place it twice.
    const key = req.idempotencyKey === "" ? `db-service:${crypto.randomUUID()}` : req.idempotencyKey;
    const request = { session, productId, quantity, key };
    // The order joins its write batch's orders (order-batch.ts), placed together in one
    // transaction with a fixed number of statements: the stock taken under the product's row
    // lock (no oversell under any concurrency), the price read under it, the session checked
    // and the key claimed by the order row in the same statement, so a repeat finds the order
    // instead of placing another.
    for (;;) {
      let outcome: OrderOutcome;
      try {
        outcome = await writer.run("order.place", (_tx, batch) => batch.joint(OrderBatch).join(request), caller);
      } catch (err) {
        // A concurrent request with the same key committed first: answer as it did.
        if (sqlState(err) === "23505" && constraintOf(err) === "orders_user_id_idempotency_key_key") {
          const earlier = await replay(userId, key, productId, quantity);
          if (earlier) return { response: earlier, product: undefined };
        }
        throw err;
      }
      switch (outcome.kind) {
        case "placed":
          return { response: { order: orderToProto(outcome.order), replayed: false }, product: outcome.product };
        case "replay":
          return { response: replayOf(outcome.order, productId, quantity), product: undefined };
        case "again":
          // The same key earlier in the same batch: that one has committed now; ask again.
          continue;
        case "session_ended":
          throw sessionEnded();
        case "product_not_found":
          throw productNotFound(productId);
        case "insufficient_stock":
          throw rpcError(ErrorReason.INSUFFICIENT_STOCK, `only ${outcome.stock} left in stock, ${quantity} requested`);
      }
    }
  }

  return {
    async placeOrder(req, ctx) {
      const { response, product } = await place(req, callerOf(ctx));
      return product === undefined ? response : { ...response, product: productToProto(product) };
    },

    async placeOrders(req, ctx) {
      // Every order joins the write batch in this same tick, so they are placed together; each
      // gets the answer PlaceOrder would have given it, but for its product: each product is
      // answered once, as the last of the call's orders left it. The last answered is the
      // latest: write batches commit one at a time, and each answers its orders in arrival order
      // (the order that took the most of a product is last).
      const caller = callerOf(ctx);
      const latest = new Map<number, ProductRow>();
      const results = await Promise.all(
        req.orders.map((order) =>
          place(order, caller).then(
            ({ response, product }) => {
              if (product !== undefined) latest.set(product.id, product);
              return { result: { case: "placed" as const, value: response } };
            },
            (err: unknown) => {
              const refusal = toConnectError(err);
              logFailure(logger, PLACE_ORDERS, refusal);
              return { result: { case: "refused" as const, value: carryRefusal(refusal) } };
            },
          ),
        ),
      );
      return { results, products: Array.from(latest.values(), productToProto) };
    },

    async getOrder(req) {
      return { order: orderToProto(await ownOrder(req.session, req.orderId)) };
    },

    async listOrders(req) {
      const before = req.pageToken === "" ? undefined : decodePageToken(req.pageToken);
      if (req.pageToken !== "" && before === undefined) {
        throw invalidArgument([{ field: "page_token", message: "is not a token this service issued" }]);
      }
      const size = req.pageSize === 0 ? DEFAULT_PAGE_SIZE : req.pageSize;
      const userId = req.session?.userId ?? 0;
      const page = await database.run("order.list", (db) =>
        db
          .select()
          .from(orders)
          .where(
            and(
              eq(orders.userId, userId),
              before === undefined ? undefined : lt(orders.id, before),
              sessionOpen(db, req.session),
            ),
          )
          .orderBy(desc(orders.id))
          .limit(size + 1),
      );
      // Nothing to show: no orders, or no session to show them to.
      if (page.length === 0) await database.run("session.check", (db) => requireSession(db, req.session));
      return pageOf(page, size);
    },

    async cancelOrder(req, ctx) {
      const { session, orderId } = req;
      const userId = session?.userId ?? 0;
      // The status condition makes the stock come back exactly once: a second cancel, even a
      // concurrent one, waits for the row lock, then finds the order no longer placed. A customer
      // cancels their own placed order; staff anyone's placed or ready one.
      const cancelled = await writer.run(
        "order.cancel",
        async (tx) => {
          const [order] = await tx
            .update(orders)
            .set({ status: "cancelled", cancelledAt: sql`now()` })
            .where(
              and(
                eq(orders.id, orderId),
                or(
                  and(eq(orders.userId, userId), eq(orders.status, "placed"), sessionOpen(tx, session)),
                  and(inArray(orders.status, ["placed", "ready"]), staffSessionOpen(tx, session)),
                ),
              ),
            )
            .returning();
          if (!order) return undefined;
          const [product] = await tx
            .update(products)
            .set({ stock: sql`${products.stock} + ${order.quantity}` })
            .where(eq(products.id, order.productId))
            .returning();
          return { order, product };
        },
        callerOf(ctx),
      );
      if (cancelled) {
        return {
          order: orderToProto(cancelled.order),
          ...(cancelled.product ? { product: productToProto(cancelled.product) } : {}),
        };
      }
      // Cancelled before (answer it again), too far along, another user's, or the session ended.
      const order = await visibleOrder(session, orderId);
      if (order.status !== "cancelled") throw invalidTransition(orderId, order.status, "cancelled");
      return { order: orderToProto(order) };
    },

    async listAllOrders(req) {
      const before = req.pageToken === "" ? undefined : decodePageToken(req.pageToken);
      if (req.pageToken !== "" && before === undefined) {
        throw invalidArgument([{ field: "page_token", message: "is not a token this service issued" }]);
      }
      const size = req.pageSize === 0 ? DEFAULT_PAGE_SIZE : req.pageSize;
      const status = STATUS_NAMES[req.status];
      const page = await database.run("order.list_all", (db) =>
        db
          .select()
          .from(orders)
          .where(
            and(
              status === undefined ? undefined : eq(orders.status, status),
              req.productId === 0 ? undefined : eq(orders.productId, req.productId),
              before === undefined ? undefined : lt(orders.id, before),
              staffSessionOpen(db, req.session),
            ),
          )
          .orderBy(desc(orders.id))
          .limit(size + 1),
      );
      if (page.length === 0) await database.run("session.check", (db) => requireStaff(db, req.session));
      return pageOf(page, size);
    },

    async markOrderReady(req) {
      return { order: orderToProto(await handOver(req.session, req.orderId, "ready")) };
    },

    async markOrderCollected(req) {
      return { order: orderToProto(await handOver(req.session, req.orderId, "collected")) };
    },
  };

  /** The order as the caller may see it: their own, or anyone's to staff. */
  async function visibleOrder(session: Session | undefined, orderId: number): Promise<OrderRow> {
    const [row] = await database.run("order.get", (db) =>
      db
        .select()
        .from(orders)
        .where(
          and(
            eq(orders.id, orderId),
            or(and(eq(orders.userId, session?.userId ?? 0), sessionOpen(db, session)), staffSessionOpen(db, session)),
          ),
        ),
    );
    if (row) return row;
    await database.run("session.check", (db) => requireSession(db, session));
    throw orderNotFound(orderId);
  }

  /** Moves an order one step at the pick-up desk, or says why it cannot move. */
  async function handOver(session: Session | undefined, orderId: number, to: keyof typeof HAND_OVER) {
    const move = HAND_OVER[to];
    const [moved] = await database.run(`order.${to}`, (db) =>
      db
        .update(orders)
        .set({ status: to, [move.stamp]: sql`now()` })
        .where(and(eq(orders.id, orderId), eq(orders.status, move.from), staffSessionOpen(db, session)))
        .returning(),
    );
    if (moved) return moved;
    await database.run("session.check", (db) => requireStaff(db, session));
    const [order] = await database.run("order.get", (db) => db.select().from(orders).where(eq(orders.id, orderId)));
    if (!order) throw orderNotFound(orderId);
    throw invalidTransition(orderId, order.status, to);
  }
}
