import type { SQL } from "drizzle-orm";
import { PgDialect } from "drizzle-orm/pg-core";
import type postgres from "postgres";

interface Pending {
  text: string;
  params: unknown[];
  resolve(rows: unknown[]): void;
  reject(err: unknown): void;
}

const dialect = new PgDialect();

/**
 * Group commit for the order path. Every order and cancellation is one statement that takes a
 * product row's lock until its transaction commits, and a commit waits for the WAL to reach the
 * disk: one statement per transaction caps a product at one order per disk flush. Instead,
 * statements that arrive while a transaction is committing queue up, and go together as the
 * next transaction, pipelined on one connection: one flush then serves them all. Under light
 * load a statement runs alone and waits for nothing.
 *
 * One transaction at a time, so two batches can never deadlock on product rows. If any
 * statement of a batch fails (a concurrent duplicate Idempotency-Key, say), the whole
 * transaction has rolled back and each statement runs again on its own, so each caller gets
 * exactly its own answer.
 */
export class WriteBatcher {
  readonly #sql: postgres.Sql;
  readonly #maxBatch: number;
  #queue: Pending[] = [];
  #draining = false;

  constructor(sql: postgres.Sql, maxBatch = 64) {
    this.#sql = sql;
    this.#maxBatch = maxBatch;
  }

  /** Runs one statement, durably, and resolves with its rows once its transaction committed. */
  run<T>(query: SQL): Promise<T[]> {
    const { sql: text, params } = dialect.sqlToQuery(query);
    return new Promise<unknown[]>((resolve, reject) => {
      this.#queue.push({ text, params, resolve, reject });
      if (!this.#draining) void this.#drain();
    }) as Promise<T[]>;
  }

  async #drain(): Promise<void> {
    this.#draining = true;
    try {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, this.#maxBatch);
        if (batch.length === 1 || !(await this.#together(batch))) await this.#oneByOne(batch);
      }
    } finally {
      this.#draining = false;
    }
  }

  async #together(batch: Pending[]): Promise<boolean> {
    let results: unknown[][];
    try {
      results = (await this.#sql.begin((tx) =>
        batch.map((p) => tx.unsafe(p.text, p.params as postgres.ParameterOrJSON<never>[], { prepare: true })),
      )) as unknown as unknown[][];
    } catch {
      return false;
    }
    for (const [i, p] of batch.entries()) p.resolve(results[i] ?? []);
    return true;
  }

  async #oneByOne(batch: Pending[]): Promise<void> {
    for (const p of batch) {
      try {
        p.resolve(await this.#sql.unsafe(p.text, p.params as postgres.ParameterOrJSON<never>[], { prepare: true }));
      } catch (err) {
        p.reject(err);
      }
    }
  }
}
