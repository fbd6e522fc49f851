import { getTableColumns } from "drizzle-orm";
import { PostgresJsSession } from "drizzle-orm/postgres-js";
import type postgres from "postgres";
import { type OrderRow, orders, type ProductRow, products } from "./schema.ts";
import type { Joint, Tx } from "./write-batcher.ts";

/** One order to place, as the batch sees it. */
export interface OrderRequest {
  /** The caller's session (the Session message, or its two fields). */
  session: { userId: number; sessionId: string } | undefined;
  productId: number;
  quantity: number;
  /** The caller's Idempotency-Key, or one made up for it: never empty. */
  key: string;
}

/** What a batch answers one request: exactly what placing it alone would have. */
export type OrderOutcome =
  /** Placed now; `product` is the product as this order left it (its stock after this order). */
  | { kind: "placed"; order: OrderRow; product: ProductRow }
  /** The caller's key already placed this order (or another request: the caller compares). */
  | { kind: "replay"; order: OrderRow }
  /** An earlier request of the same batch holds the same key: ask again once it committed. */
  | { kind: "again" }
  | { kind: "session_ended" }
  | { kind: "product_not_found" }
  /** `stock` is what was left when its turn came. */
  | { kind: "insufficient_stock"; stock: number };

type OrderKey = keyof OrderRow;
type ProductKey = keyof ProductRow;
const ORDER_COLUMNS = Object.entries(getTableColumns(orders)).map(([key, col]) => ({
  key: key as OrderKey,
  name: col.name,
}));
const PRODUCT_COLUMNS = Object.entries(getTableColumns(products)).map(([key, col]) => ({
  key: key as ProductKey,
  name: col.name,
}));
const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;

/**
 * Locks, once and in id order, every product the batch names, so that the order batches of two
 * db-service replicas never wait on each other in a cycle (within one db-service, batches run one
 * at a time; a cancellation or stock adjustment sharing the transaction locks its one product
 * first, and should two replicas ever deadlock that way, PostgreSQL aborts one batch and its
 * writes run again one by one: write-batcher.ts). A statement of its own: the placing statement
 * then starts with a snapshot taken after the locks were granted, so it sees the stock as the
 * last committed change left it.
 */
const LOCK = "SELECT id FROM products WHERE id = ANY($1::int4[]) ORDER BY id FOR NO KEY UPDATE";

/**
 * Places a whole batch in one statement: the requests come as arrays, in arrival order (seq).
 * Each is judged as if alone and in turn: a key the account used before is a replay; a key an
 * earlier request of the batch holds waits for the next batch; then the session, the product,
 * and the stock: per product, a walk in arrival order over the candidates takes each order that
 * still fits what the ones before it left (an order that does not fit takes nothing, and a
 * smaller one after it may still fit, as if they had come one by one). One UPDATE takes each
 * product's accepted total, one INSERT writes the accepted orders. Built once from the schema,
 * sent as a prepared statement: nothing is built per order.
 */
const PLACE = `
WITH RECURSIVE
req AS (
  SELECT r.seq::int4 AS seq, r.user_id, r.session_id, r.product_id, r.quantity, r.key,
         row_number() OVER (PARTITION BY r.user_id, r.key ORDER BY r.seq) > 1 AS again
  FROM unnest($1::int4[], $2::uuid[], $3::int4[], $4::int4[], $5::text[])
       WITH ORDINALITY AS r(user_id, session_id, product_id, quantity, key, seq)
),
prior AS (
  SELECT req.seq, o.* FROM req JOIN orders o ON o.user_id = req.user_id AND o.idempotency_key = req.key
),
judged AS (
  SELECT req.seq, req.user_id, req.product_id, req.quantity, req.key, p.stock, p.price,
    CASE
      WHEN EXISTS (SELECT 1 FROM prior WHERE prior.seq = req.seq) THEN 'replay'
      WHEN req.again THEN 'again'
      WHEN NOT EXISTS (
        SELECT 1 FROM sessions s JOIN users u ON u.id = s.user_id
        WHERE s.id = req.session_id AND s.user_id = req.user_id AND s.ended_at IS NULL
          AND s.expires_at > now() AND u.is_active
      ) THEN 'session_ended'
      WHEN p.id IS NULL THEN 'product_not_found'
      ELSE 'candidate'
    END AS verdict
  -- An archived product is kept for its orders, but no longer sold: not found to a buyer.
  FROM req LEFT JOIN products p ON p.id = req.product_id AND NOT p.archived
),
cand AS (
  SELECT seq, product_id, quantity, stock, row_number() OVER (PARTITION BY product_id ORDER BY seq) AS k
  FROM judged WHERE verdict = 'candidate'
),
walk (product_id, k, seq, ok, left_before, left_after) AS (
  SELECT product_id, k, seq, quantity <= stock, stock,
         CASE WHEN quantity <= stock THEN stock - quantity ELSE stock END
  FROM cand WHERE k = 1
  UNION ALL
  SELECT c.product_id, c.k, c.seq, c.quantity <= w.left_after, w.left_after,
         CASE WHEN c.quantity <= w.left_after THEN w.left_after - c.quantity ELSE w.left_after END
  FROM walk w JOIN cand c ON c.product_id = w.product_id AND c.k = w.k + 1
),
sold AS (
  UPDATE products p SET stock = p.stock - s.quantity
  FROM (
    SELECT c.product_id, sum(c.quantity)::int4 AS quantity
    FROM walk w JOIN cand c ON c.seq = w.seq WHERE w.ok GROUP BY c.product_id
  ) s
  WHERE p.id = s.product_id
  RETURNING p.id
),
placed AS (
  INSERT INTO orders (user_id, product_id, quantity, unit_price, idempotency_key)
  SELECT j.user_id, j.product_id, j.quantity, j.price, j.key
  FROM judged j JOIN walk w ON w.seq = j.seq AND w.ok ORDER BY j.seq
  RETURNING *
),
orows AS (
  SELECT j.seq, pl.* FROM placed pl
  JOIN judged j ON j.user_id = pl.user_id AND j.key = pl.idempotency_key AND j.verdict = 'candidate'
  UNION ALL
  SELECT * FROM prior
),
-- The first placed order of each product: the one answer row that carries the product's columns
-- (the others of that product take them from it, with their own stock), so the product's text is
-- sent and parsed once per batch, not once per order.
firsts AS (
  SELECT min(seq) AS seq FROM walk WHERE ok GROUP BY product_id
)
SELECT j.seq,
  CASE WHEN j.verdict <> 'candidate' THEN j.verdict WHEN w.ok THEN 'placed' ELSE 'insufficient_stock' END AS outcome,
  w.left_before, w.left_after,
  ${ORDER_COLUMNS.map((c) => `o.${quote(c.name)} AS ${quote(`o.${c.key}`)}`).join(", ")},
  ${PRODUCT_COLUMNS.map((c) => `p.${quote(c.name)} AS ${quote(`p.${c.key}`)}`).join(", ")}
FROM judged j
LEFT JOIN walk w ON w.seq = j.seq
LEFT JOIN orows o ON o.seq = j.seq
LEFT JOIN firsts f ON f.seq = j.seq
LEFT JOIN products p ON p.id = j.product_id AND f.seq IS NOT NULL
ORDER BY j.seq`;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

type Row = Record<string, unknown>;

// The result's column for each field, named once: no name is built per row.
const ORDER_FIELDS = ORDER_COLUMNS.map((c) => ({ key: c.key, alias: `o.${c.key}` }));
const PRODUCT_FIELDS = PRODUCT_COLUMNS.map((c) => ({ key: c.key, alias: `p.${c.key}` }));

function pick<K extends string>(row: Row, fields: readonly { key: K; alias: string }[]): Record<K, unknown> {
  const out = {} as Record<K, unknown>;
  for (const { key, alias } of fields) out[key] = row[alias];
  return out;
}

/**
 * One answer row's outcome. `products` holds, by id, the product columns of the batch's first
 * placed order of each product (the only row that carries them; rows come in arrival order).
 */
function outcomeOf(row: Row, products: Map<number, ProductRow>): OrderOutcome {
  const kind = String(row.outcome);
  switch (kind) {
    case "placed": {
      const order = pick(row, ORDER_FIELDS) as OrderRow;
      let product = products.get(order.productId);
      if (row["p.id"] !== null) {
        product = pick(row, PRODUCT_FIELDS) as ProductRow;
        products.set(order.productId, product);
      }
      if (product === undefined) throw new Error("order batch: a placed order's product was not sent");
      // The product as this order left it: its stock after this order.
      return { kind, order, product: { ...product, stock: Number(row.left_after) } };
    }
    case "replay":
      return { kind, order: pick(row, ORDER_FIELDS) as OrderRow };
    case "insufficient_stock":
      return { kind, stock: Number(row.left_before) };
    case "again":
    case "session_ended":
    case "product_not_found":
      return { kind };
    default:
      throw new Error(`order batch: unknown outcome ${kind}`);
  }
}

/** The postgres.js transaction under drizzle's, for statements drizzle does not build. */
export function rawTransaction(tx: Tx): postgres.TransactionSql {
  const session = tx._.session;
  if (!(session instanceof PostgresJsSession)) throw new Error("not a postgres.js transaction");
  return session.client as postgres.TransactionSql;
}

/**
 * The orders of one write batch (write-batcher.ts): each place-order write joins it with its
 * request, and once every write of the batch has joined, `flush` places them all with two
 * prepared statements, whatever their number, and answers each. Writes that change stock by
 * other statements in the same transaction (cancellations, staff adjustments) are simply seen:
 * PostgreSQL runs the transaction's statements in the order they were sent.
 */
export class OrderBatch implements Joint {
  readonly #raw: postgres.TransactionSql;
  #requests: OrderRequest[] = [];
  #answers: { resolve(o: OrderOutcome): void; reject(err: unknown): void }[] = [];

  constructor(tx: Tx) {
    this.#raw = rawTransaction(tx);
  }

  join(request: OrderRequest): Promise<OrderOutcome> {
    return new Promise((resolve, reject) => {
      this.#requests.push(request);
      this.#answers.push({ resolve, reject });
    });
  }

  async flush(): Promise<void> {
    const requests = this.#requests;
    const answers = this.#answers;
    this.#requests = [];
    this.#answers = [];
    if (requests.length === 0) return;
    try {
      const rows = await placeAll(this.#raw, requests);
      const products = new Map<number, ProductRow>();
      for (const [i, answer] of answers.entries()) {
        const row = rows[i];
        if (row === undefined) answer.reject(new Error("order batch: a request had no answer"));
        else answer.resolve(outcomeOf(row, products));
      }
    } catch (err) {
      for (const answer of answers) answer.reject(err);
    }
  }
}

/** The statements a batch of orders sends, whatever its size (for the bench's report). */
export const ORDER_BATCH_STATEMENTS: readonly string[] = [LOCK, PLACE];

/**
 * Places the requests, in this order, inside the caller's transaction: the batch's two
 * statements, pipelined (no round trip between them). Resolves with each request's outcome.
 */
export async function placeOrders(
  raw: postgres.TransactionSql,
  requests: readonly OrderRequest[],
): Promise<OrderOutcome[]> {
  const products = new Map<number, ProductRow>();
  return (await placeAll(raw, requests)).map((row) => outcomeOf(row, products));
}

async function placeAll(raw: postgres.TransactionSql, requests: readonly OrderRequest[]): Promise<Row[]> {
  const productIds = requests.map((r) => r.productId);
  const locked = raw.unsafe(LOCK, [[...new Set(productIds)].sort((a, b) => a - b)], { prepare: true });
  const placed = raw.unsafe(
    PLACE,
    [
      requests.map((r) => r.session?.userId ?? 0),
      // A session id that is no UUID names no session: NULL, instead of failing the batch's cast.
      requests.map((r) => (r.session && UUID.test(r.session.sessionId) ? r.session.sessionId : null)),
      productIds,
      requests.map((r) => r.quantity),
      requests.map((r) => r.key),
    ],
    { prepare: true },
  );
  const [, rows] = await Promise.all([locked, placed]);
  if (rows.length !== requests.length) throw new Error("order batch: not one answer per request");
  return rows as unknown as Row[];
}
