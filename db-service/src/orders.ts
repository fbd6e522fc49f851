import { createHash } from "node:crypto";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import type { OrderService } from "@merch/gen/merch/store/v1/order_pb";
import { rpcError } from "@merch/kit/errors";
import { type SQL, sql } from "drizzle-orm";
import { orderToProto } from "./convert.ts";
import { constraintOf, type Db, sqlState } from "./db.ts";
import { accountDeactivated, productNotFound, userNotFound } from "./refusals.ts";
import type { OrderRow } from "./schema.ts";
import { Check, MAX_ID } from "./validation.ts";
import type { WriteBatcher } from "./write-batcher.ts";

const DEFAULT_PAGE_SIZE = 20;

// Raw statements below return the same camelCase row shape as drizzle's selects.
const orderColumns = (alias: string) =>
  sql.raw(
    `${alias}id AS "id", ${alias}user_id AS "userId", ${alias}product_id AS "productId", ${alias}quantity AS "quantity",
     ${alias}unit_price AS "unitPrice", ${alias}total_price AS "totalPrice", ${alias}status AS "status",
     ${alias}created_at AS "createdAt", ${alias}cancelled_at AS "cancelledAt"`,
  );
const ORDER_COLUMNS = orderColumns("");

const orderNotFound = (id: number) => rpcError(Code.NotFound, "order_not_found", `order ${id} does not exist`);

/** A row of a query that starts from the user, so that a deactivated account is told apart. */
type WithOwner<T> = { active: boolean } & { [K in keyof T]: T[K] | null };

/** What an Idempotency-Key is bound to: the request it was first used with. */
function requestHash(productId: number, quantity: number): string {
  return createHash("sha256").update(`place-order:v1:${productId}:${quantity}`).digest("hex");
}

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

export function orderService(db: Db, writer: WriteBatcher): ServiceImpl<typeof OrderService> {
  /** Order writes commit in groups: see write-batcher.ts. */
  function write(query: SQL): Promise<OrderRow[]> {
    return writer.run<OrderRow>(query);
  }

  /**
   * The caller's order, read together with the caller's account: every order call acts for an
   * active account only, so a deactivated user's session ends at once here too.
   */
  async function ownOrder(userId: number, orderId: number): Promise<OrderRow> {
    const [row] = (await db.execute(sql`
      SELECT u.is_active AS "active", ${orderColumns("o.")}
      FROM users u LEFT JOIN orders o ON o.id = ${orderId} AND o.user_id = u.id
      WHERE u.id = ${userId}`)) as unknown as WithOwner<OrderRow>[];
    if (!row) throw userNotFound(userId);
    if (!row.active) throw accountDeactivated();
    if (row.id === null) throw orderNotFound(orderId);
    return row as OrderRow;
  }

  /** The order first placed with this key, or a refusal when the key was used for another request. */
  async function replay(userId: number, key: string, hash: string) {
    const [found] = await db.execute<OrderRow & { requestHash: string }>(sql`
      SELECT k.request_hash AS "requestHash", o.id, o.user_id AS "userId", o.product_id AS "productId",
             o.quantity, o.unit_price AS "unitPrice", o.total_price AS "totalPrice", o.status,
             o.created_at AS "createdAt", o.cancelled_at AS "cancelledAt"
      FROM idempotency_keys k JOIN orders o ON o.id = k.order_id
      WHERE k.user_id = ${userId} AND k.key = ${key}`);
    if (!found) return undefined;
    if (found.requestHash !== hash) {
      throw rpcError(
        Code.FailedPrecondition,
        "idempotency_key_reused",
        "this Idempotency-Key was already used with a different request",
      );
    }
    return { order: orderToProto(found), replayed: true };
  }

  /** Why no order was placed: the product, the user, or the stock. */
  async function refusal(userId: number, productId: number, quantity: number): Promise<never> {
    const [state] = await db.execute<{ stock: number | null; active: boolean | null }>(sql`
      SELECT (SELECT stock FROM products WHERE id = ${productId}) AS stock,
             (SELECT is_active FROM users WHERE id = ${userId}) AS active`);
    if (state?.stock === null || state?.stock === undefined) {
      throw productNotFound(productId);
    }
    if (state.active === null) throw userNotFound(userId);
    if (!state.active) throw accountDeactivated();
    throw rpcError(
      Code.FailedPrecondition,
      "insufficient_stock",
      `only ${state.stock} left in stock, ${quantity} requested`,
    );
  }

  return {
    async placeOrder(req) {
      const check = new Check()
        .id("user_id", req.userId)
        .id("product_id", req.productId)
        .intRange("quantity", req.quantity, 1, 3);
      if (req.idempotencyKey !== "") check.idempotencyKey("idempotency_key", req.idempotencyKey);
      check.done();
      const { userId, productId, quantity } = req;
      const key = req.idempotencyKey === "" ? undefined : req.idempotencyKey;
      const hash = requestHash(productId, quantity);
      if (key !== undefined) {
        const earlier = await replay(userId, key, hash);
        if (earlier) return earlier;
      }
      // One statement, so one implicit transaction: the stock decrement is conditional and
      // atomic (no oversell under any concurrency), the price is read in the same row lock,
      // and the key row commits with the order or not at all.
      const recordKey =
        key === undefined
          ? sql``
          : sql`, k AS (
              INSERT INTO idempotency_keys (user_id, key, request_hash, order_id)
              SELECT ${userId}, ${key}, ${hash}, o.id FROM o)`;
      let placed: OrderRow[];
      try {
        placed = await write(sql`
          WITH p AS (
            UPDATE products SET stock = stock - ${quantity}
            WHERE id = ${productId} AND stock >= ${quantity}
              AND EXISTS (SELECT 1 FROM users WHERE id = ${userId} AND is_active)
            RETURNING id, price
          ), o AS (
            INSERT INTO orders (user_id, product_id, quantity, unit_price)
            SELECT ${userId}, p.id, ${quantity}, p.price FROM p
            RETURNING ${ORDER_COLUMNS}
          )${recordKey}
          SELECT * FROM o`);
      } catch (err) {
        // A concurrent request with the same key committed first: answer as it did.
        if (key !== undefined && sqlState(err) === "23505" && constraintOf(err) === "idempotency_keys_pkey") {
          const earlier = await replay(userId, key, hash);
          if (earlier) return earlier;
        }
        throw err;
      }
      const [row] = placed;
      if (!row) return refusal(userId, productId, quantity);
      return { order: orderToProto(row), replayed: false };
    },

    async getOrder(req) {
      new Check().id("user_id", req.userId).id("order_id", req.orderId).done();
      return { order: orderToProto(await ownOrder(req.userId, req.orderId)) };
    },

    async listOrders(req) {
      const before = req.pageToken === "" ? undefined : decodePageToken(req.pageToken);
      new Check()
        .id("user_id", req.userId)
        .intRange("page_size", req.pageSize, 0, 100)
        .require("page_token", req.pageToken === "" || before !== undefined, "is not a token this service issued")
        .done();
      const size = req.pageSize === 0 ? DEFAULT_PAGE_SIZE : req.pageSize;
      // One row per order, or one row with no order: either way the account comes along.
      const result = (await db.execute(sql`
        SELECT u.is_active AS "active", ${orderColumns("o.")}
        FROM users u LEFT JOIN LATERAL (
          SELECT * FROM orders
          WHERE user_id = u.id ${before === undefined ? sql`` : sql`AND id < ${before}`}
          ORDER BY id DESC LIMIT ${size + 1}
        ) o ON true
        WHERE u.id = ${req.userId}`)) as unknown as WithOwner<OrderRow>[];
      const [owner] = result;
      if (!owner) throw userNotFound(req.userId);
      if (!owner.active) throw accountDeactivated();
      const page = result.filter((r): r is WithOwner<OrderRow> & OrderRow => r.id !== null);
      const more = page.length > size;
      const items = more ? page.slice(0, size) : page;
      const last = items.at(-1);
      return {
        orders: items.map(orderToProto),
        nextPageToken: more && last ? encodePageToken(last.id) : "",
      };
    },

    async cancelOrder(req) {
      new Check().id("user_id", req.userId).id("order_id", req.orderId).done();
      // The status condition makes the stock come back exactly once: a second cancel, even a
      // concurrent one, waits for the row lock, then finds the order no longer placed.
      const [cancelled] = await write(sql`
        WITH o AS (
          UPDATE orders SET status = 'cancelled', cancelled_at = now()
          WHERE id = ${req.orderId} AND user_id = ${req.userId} AND status = 'placed'
            AND EXISTS (SELECT 1 FROM users WHERE id = ${req.userId} AND is_active)
          RETURNING ${ORDER_COLUMNS}
        ), restock AS (
          UPDATE products SET stock = products.stock + o.quantity FROM o WHERE products.id = o."productId"
        )
        SELECT * FROM o`);
      if (cancelled) return { order: orderToProto(cancelled) };
      // Cancelled before (answer it again), another user's, or the account is deactivated.
      return { order: orderToProto(await ownOrder(req.userId, req.orderId)) };
    },
  };
}
