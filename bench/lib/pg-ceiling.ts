// The database's own ceiling for orders: the statements db-service runs for an order, issued
// straight to PostgreSQL from the bench with postgres.js, grouped into transactions the way
// db-service's WriteBatcher groups them (db-service/src/write-batcher.ts): whatever arrives while
// a transaction commits goes, pipelined on one connection, into the next one (at most 64), with
// one set_config('statement_timeout') and one COMMIT (one WAL flush) per batch. No Connect, no
// ORM and no HTTP/2 on the way: what is left is what PostgreSQL itself costs per order.

import * as schema from "@merch/db-service/schema";
import { sessionOpen } from "@merch/db-service/sessions";
import type { Session } from "@merch/gen/merch/store/v1/session_pb";
import { and, sql as dsql, eq, gte, notExists } from "drizzle-orm";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";

export interface OrderInput {
  userId: number;
  sessionId: string;
  productId: number;
  quantity: number;
  key: string;
}

// Stand-ins for the values of one order: the statements are built once by drizzle, from the same
// schema and the same session condition db-service uses, and each parameter that is one of these
// is replaced by the order's own value (the others are constants of the statement).
const S = {
  productId: -1_000_001,
  quantity: -1_000_002,
  userId: -1_000_003,
  sessionId: "bench-sentinel-session",
  key: "bench-sentinel-key",
  unitPrice: "-1000004.00",
} as const;

type ParamOf = (o: OrderInput, unitPrice: string) => unknown;

function template(params: readonly unknown[]): ParamOf[] {
  return params.map((p): ParamOf => {
    if (p === S.productId) return (o) => o.productId;
    if (p === S.quantity) return (o) => o.quantity;
    if (p === S.userId) return (o) => o.userId;
    if (p === S.sessionId) return (o) => o.sessionId;
    if (p === S.key) return (o) => o.key;
    if (p === S.unitPrice) return (_, price) => price;
    return () => p;
  });
}

export interface Ceiling {
  /** Places one order; resolves once its batch committed: "ok", or why it placed nothing. */
  place(order: OrderInput): Promise<string>;
  /** The SQL of one order, as the bench sends it (for the report). */
  statements: string[];
  /** Batches committed and orders in them so far. */
  stats(): { batches: number; orders: number };
  close(): Promise<void>;
}

interface Pending {
  order: OrderInput;
  resolve(outcome: string): void;
  reject(err: unknown): void;
}

export function openCeiling(databaseUrl: string, opts: { maxBatch?: number; statementTimeoutMs?: number } = {}) {
  const maxBatch = opts.maxBatch ?? 64;
  const timeoutMs = opts.statementTimeoutMs ?? 5000;
  // The connection settings of db-service's pool (db-service/src/db.ts).
  const sql = postgres(databaseUrl, {
    max: 1,
    onnotice: () => {},
    connection: {
      application_name: "bench-ceiling",
      statement_timeout: 5000,
      idle_in_transaction_session_timeout: 10_000,
      TimeZone: "UTC",
    },
  });
  // drizzle only writes the SQL here (and sets the client's date parsers as db-service's does).
  const db = drizzle({ client: sql, schema });
  const { orders, products } = schema;
  const session = { userId: S.userId, sessionId: S.sessionId } as Session;
  // The statements of `place` in db-service/src/orders.ts.
  const update = db
    .update(products)
    .set({ stock: dsql`${products.stock} - ${S.quantity}` })
    .where(
      and(
        eq(products.id, S.productId),
        gte(products.stock, S.quantity),
        sessionOpen(db, session),
        notExists(
          db
            .select()
            .from(orders)
            .where(and(eq(orders.userId, S.userId), eq(orders.idempotencyKey, S.key))),
        ),
      ),
    )
    .returning()
    .toSQL();
  const insert = db
    .insert(orders)
    .values({
      userId: S.userId,
      productId: S.productId,
      quantity: S.quantity,
      unitPrice: S.unitPrice,
      idempotencyKey: S.key,
    })
    .returning()
    .toSQL();
  const updateParams = template(update.params);
  const insertParams = template(insert.params);
  type Param = postgres.ParameterOrJSON<never>;
  const params = (t: ParamOf[], o: OrderInput, price: string) => t.map((f) => f(o, price) as Param);

  let queue: Pending[] = [];
  let draining = false;
  let batches = 0;
  let placed = 0;

  async function one(tx: postgres.TransactionSql, o: OrderInput): Promise<string> {
    // drizzle sends its statements unnamed (prepare: false): parsed again each time, as here.
    const [product] = await tx.unsafe(update.sql, params(updateParams, o, ""), { prepare: false });
    if (!product) return "refused";
    const [order] = await tx.unsafe(insert.sql, params(insertParams, o, String(product.price)), {
      prepare: false,
    });
    return order ? "ok" : "no order row";
  }

  async function drain(): Promise<void> {
    draining = true;
    try {
      while (queue.length > 0) {
        const batch = queue.splice(0, maxBatch);
        try {
          const outcomes = await sql.begin(async (tx) => {
            void tx`SELECT set_config('statement_timeout', ${String(timeoutMs)}, true)`.catch(() => {});
            return Promise.all(batch.map((p) => one(tx, p.order)));
          });
          batches++;
          placed += batch.length;
          batch.forEach((p, i) => {
            p.resolve(outcomes[i] ?? "missing");
          });
        } catch (err) {
          for (const p of batch) p.reject(err);
        }
      }
    } finally {
      draining = false;
    }
  }

  const ceiling: Ceiling = {
    place(order) {
      return new Promise<string>((resolve, reject) => {
        queue.push({ order, resolve, reject });
        if (!draining) void drain();
      });
    },
    statements: [update.sql, insert.sql],
    stats: () => ({ batches, orders: placed }),
    async close() {
      queue = [];
      await sql.end({ timeout: 5 });
    },
  };
  return ceiling;
}
