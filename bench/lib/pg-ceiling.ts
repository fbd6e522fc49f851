// The database's own ceiling for orders: db-service's set-based batch (db-service/src/
// order-batch.ts: the requests as arrays, each product locked once, one UPDATE, one INSERT),
// sent straight to PostgreSQL from the bench with postgres.js, on one connection, one batch after
// another, each of the size the store itself formed (its orders per transaction in the `orders`
// scenario), with db-service's set_config('statement_timeout') and one COMMIT (one WAL flush)
// per batch. No Connect, no HTTP/2, no waiting for callers: what is left is what PostgreSQL
// itself costs per order at the store's own batch sizes.

import { ORDER_BATCH_STATEMENTS, type OrderRequest, placeOrders } from "@merch/db-service/order-batch";
import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import { type LoadResult, summarize } from "./load.ts";

export interface Buyer {
  userId: number;
  sessionId: string;
}

export interface Ceiling {
  /** Places batches of `batchSize` orders for `durationS`; every order is one request. */
  run(opts: {
    batchSize: number;
    durationS: number;
    buyers: readonly Buyer[];
    productIds: readonly number[];
  }): Promise<LoadResult>;
  /** The statements of one batch, as the bench sends them (for the report). */
  statements: readonly string[];
  /** Batches committed and orders in them so far. */
  stats(): { batches: number; orders: number };
  close(): Promise<void>;
}

// Counts across the warm-up's ceiling and the measured one: a key used twice would be a replay.
let n = 0;

export function openCeiling(databaseUrl: string, opts: { statementTimeoutMs?: number } = {}): Ceiling {
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
  // Only for its side effect: timestamps come back as text, as in db-service.
  drizzle({ client: sql });
  let batches = 0;
  let placed = 0;

  return {
    async run({ batchSize, durationS, buyers, productIds }) {
      const latencies: number[] = [];
      const statuses: Record<string, number> = {};
      let errors = 0;
      const started = performance.now();
      const end = started + durationS * 1000;
      while (performance.now() < end) {
        const requests: OrderRequest[] = Array.from({ length: batchSize }, (_, i) => ({
          session: buyers[(n + i) % buyers.length],
          productId: productIds[(n + i) % productIds.length] ?? 0,
          quantity: 1,
          key: `db-service:${process.pid}:${n + i}`,
        }));
        n += batchSize;
        const t = performance.now();
        try {
          const outcomes = await sql.begin(async (tx) => {
            void tx`SELECT set_config('statement_timeout', ${String(timeoutMs)}, true)`.catch(() => {});
            return placeOrders(tx, requests);
          });
          batches++;
          for (const o of outcomes) {
            const label = o.kind === "placed" ? "ok" : o.kind;
            statuses[label] = (statuses[label] ?? 0) + 1;
            if (o.kind === "placed") placed++;
          }
        } catch (err) {
          errors += batchSize;
          const label = err instanceof Error ? err.message.slice(0, 80) : String(err);
          statuses[label] = (statuses[label] ?? 0) + batchSize;
        }
        // Each order of the batch waited for the whole batch.
        const ms = performance.now() - t;
        for (let i = 0; i < batchSize; i++) latencies.push(ms);
      }
      return summarize(latencies, (performance.now() - started) / 1000, statuses, statuses.ok ?? 0, errors);
    },
    statements: ORDER_BATCH_STATEMENTS,
    stats: () => ({ batches, orders: placed }),
    async close() {
      await sql.end({ timeout: 5 });
    },
  };
}
