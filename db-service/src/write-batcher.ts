import {
  ErrorReason,
  endSpan,
  isExporting,
  type Link,
  linkToActive,
  raceAbort,
  rpcError,
  startBatchSpan,
} from "@merch/kit";
import { sql } from "drizzle-orm";
import type { PgDatabase } from "drizzle-orm/pg-core";
import type { PostgresJsQueryResultHKT } from "drizzle-orm/postgres-js";
import { type Database, databaseUnavailable, isServerAnswer } from "./db.ts";
import type { DbMetrics } from "./metrics.ts";
import type * as schema from "./schema.ts";

/** What a write runs its statement on: the batch's transaction. */
export type Tx = PgDatabase<PostgresJsQueryResultHKT, typeof schema>;

/** The caller's side of a write: when it gives up. */
export interface Caller {
  /** Aborted when the caller hangs up or its deadline passes (Connect's HandlerContext.signal). */
  signal: AbortSignal;
  /** When the caller's deadline passes, in ms since the epoch; Infinity without one. */
  deadline: number;
}

/**
 * Work that writes of one batch do together: each write joins it (before its first await), and
 * the batch flushes it once every write has started, so that N writes cost the joint's
 * statements once (order-batch.ts: a batch of orders in two statements).
 */
export interface Joint {
  /** Runs the joined work and answers each write that joined; never throws (it answers with it). */
  flush(): Promise<void>;
}

/** What a write gets besides the transaction: the batch's joints, made on first use. */
export class Batch {
  readonly #tx: Tx;
  readonly #joints = new Map<new (tx: Tx) => Joint, Joint>();

  constructor(tx: Tx) {
    this.#tx = tx;
  }

  /** The batch's joint of this kind. */
  joint<J extends Joint>(kind: new (tx: Tx) => J): J {
    let joint = this.#joints.get(kind);
    if (joint === undefined) {
      joint = new kind(this.#tx);
      this.#joints.set(kind, joint);
    }
    return joint as J;
  }

  async flush(): Promise<void> {
    for (const joint of this.#joints.values()) await joint.flush();
  }
}

interface Pending {
  /** The operation, as the batch's span names it. */
  name: string;
  work: (tx: Tx, batch: Batch) => Promise<unknown>;
  caller: Caller;
  /** The span of the request the write is for (its RPC's), which the batch's span links to. */
  link: Link | undefined;
  /** performance.now() when it was asked for: its wait and commit are timed from there. */
  started: number;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

const notStarted = () =>
  rpcError(ErrorReason.UPSTREAM_TIMEOUT, "the deadline passed before the write could be made; nothing was changed");
const outcomeUnknown = () =>
  rpcError(
    ErrorReason.OUTCOME_UNKNOWN,
    "the database connection failed while the write was committing: it may or may not have happened; " +
      "repeat the request with the same idempotency key to find out",
  );

/** The links of a batch's span: the request span of each write that has one. */
function linksOf(batch: readonly Pending[]): Link[] {
  const links: Link[] = [];
  for (const p of batch) if (p.link) links.push(p.link);
  return links;
}

/** The batch's operations, as one name: "order.place", or "order.cancel order.place". */
function operationsOf(batch: readonly Pending[]): string {
  const names = new Set<string>();
  for (const p of batch) names.add(p.name);
  return [...names].sort().join(" ");
}

/** Thrown inside a batch's transaction to roll it back because some caller gave up. */
class CallerGone extends Error {}

/** The database was found down while the batch ran. */
class DatabaseDown extends Error {}

/**
 * Group commit for the order path. Every order and cancellation is one statement that holds a
 * product row's lock until its transaction commits, and a commit waits for the WAL to reach the
 * disk: one statement per transaction caps a product at one order per disk flush. Instead,
 * statements that arrive while a transaction is committing queue up and go together as the next
 * transaction, pipelined on one connection: one flush serves them all. Under light load a
 * statement runs alone and waits for nothing. One transaction at a time, so two batches never
 * deadlock on product rows. Writes that share a joint (the batch's orders: order-batch.ts) are
 * done together by it, in a fixed number of statements however many there are.
 *
 * No write outlives its caller, and none is done twice:
 * - a write whose caller has gone (hung up, deadline passed) before its batch starts is not
 *   started; a batch's statements may run only until the earliest deadline among them
 *   (statement_timeout), and a batch whose caller went meanwhile is rolled back, not committed;
 * - when a batch fails before COMMIT, PostgreSQL has rolled it back whole, so its writes run again
 *   one by one and each caller gets its own answer; when the connection fails during COMMIT,
 *   nobody knows whether it happened: those callers are told so (outcome_unknown), and nothing is
 *   run again.
 */
export class WriteBatcher {
  readonly #database: Database;
  readonly #maxBatch: number;
  readonly #metrics: DbMetrics | undefined;
  #queue: Pending[] = [];
  readonly #labels = new Map<string, { db_system_name: string; db_operation_name: string }>();
  #draining = false;

  constructor(database: Database, opts: { maxBatch?: number; metrics?: DbMetrics } = {}) {
    this.#database = database;
    this.#maxBatch = opts.maxBatch ?? 64;
    this.#metrics = opts.metrics;
  }

  /** Runs one write, durably, as operation `name`: resolves with its result once it committed. */
  run<T>(name: string, work: (tx: Tx, batch: Batch) => Promise<T>, caller: Caller): Promise<T> {
    return new Promise<unknown>((resolve, reject) => {
      this.#queue.push({ name, work, caller, link: linkToActive(), started: performance.now(), resolve, reject });
      if (!this.#draining) {
        // The batch starts once the code that asked has run to its first await: the writes one
        // call makes together (PlaceOrders' orders) then go in one transaction, not the first
        // alone and the rest in the next.
        this.#draining = true;
        queueMicrotask(() => void this.#drain());
      }
    }) as Promise<T>;
  }

  /**
   * Answers a write, timed from when it was asked for. One histogram observation with labels made
   * once per operation: no timer closure, label object or wrapped callbacks per write.
   */
  #resolve(p: Pending, value: unknown): void {
    this.#observe(p);
    p.resolve(value);
  }

  #reject(p: Pending, err: unknown): void {
    this.#observe(p);
    p.reject(err);
  }

  #observe(p: Pending): void {
    const histogram = this.#metrics?.operationDuration;
    if (histogram === undefined) return;
    let labels = this.#labels.get(p.name);
    if (labels === undefined) {
      labels = { db_system_name: "postgresql", db_operation_name: p.name };
      this.#labels.set(p.name, labels);
    }
    histogram.observe(labels, (performance.now() - p.started) / 1000);
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const retry = await this.#attempt(this.#queue.splice(0, this.#maxBatch));
        // One by one: each statement alone in its transaction, its error its caller's.
        for (const p of retry) await this.#attempt([p]);
      }
    } finally {
      this.#draining = false;
    }
  }

  /** Commits what is still wanted of the batch; returns the writes to run again. */
  async #attempt(batch: Pending[]): Promise<Pending[]> {
    const live = this.#live(batch);
    if (live.length === 0) return [];
    if (!this.#database.up) {
      for (const p of live) this.#reject(p, databaseUnavailable());
      return [];
    }
    return this.#commit(live);
  }

  /** The writes whose callers still wait; the others are told nothing was done. */
  #live(batch: Pending[]): Pending[] {
    const now = Date.now();
    return batch.filter((p) => {
      if (!p.caller.signal.aborted && p.caller.deadline > now) return true;
      this.#reject(p, notStarted());
      return false;
    });
  }

  /**
   * Runs the batch as one transaction and answers its callers. Returns the writes to run again:
   * all of them when the transaction failed before COMMIT, so that PostgreSQL rolled it back.
   */
  async #commit(batch: Pending[]): Promise<Pending[]> {
    this.#metrics?.batchSize.observe(batch.length);
    // One transaction for writes of many traces: one span, linked to each write's request span
    // (its RPC's), rather than a span per write in each trace.
    const batchSpan = isExporting()
      ? startBatchSpan("db write batch", linksOf(batch), {
          "db.system.name": "postgresql",
          "db.operation.name": operationsOf(batch),
          "db.operation.batch.size": batch.length,
        })
      : undefined;
    this.#metrics?.connectionsUsed.inc({ state: "used" });
    let failed: unknown;
    try {
      const retry = await this.#transaction(batch);
      if (retry.length > 0) failed = "rolled back: its writes run again one by one";
      return retry;
    } catch (err) {
      failed = err;
      throw err;
    } finally {
      this.#metrics?.connectionsUsed.dec({ state: "used" });
      if (batchSpan) endSpan(batchSpan, failed);
    }
  }

  async #transaction(batch: Pending[]): Promise<Pending[]> {
    const deadline = Math.min(...batch.map((p) => p.caller.deadline));
    let results: PromiseSettledResult<unknown>[] | undefined;
    let committing = false;
    // When the database is found down mid-batch, the callers are answered at once instead of
    // waiting for a frozen server; the transaction is abandoned and may never reach COMMIT.
    const down = this.#database.downSignal;
    try {
      const transaction = this.#database.db.transaction(async (tx) => {
        if (Number.isFinite(deadline)) {
          const ms = Math.max(1, Math.floor(deadline - Date.now()));
          // Pipelined with the statements, no round trip of its own; if it fails, they fail too.
          tx.execute(sql`SELECT set_config('statement_timeout', ${String(ms)}, true)`).catch(() => {});
        }
        const joined = new Batch(tx);
        const running = Promise.allSettled(batch.map((p) => p.work(tx, joined)));
        await joined.flush();
        results = await running;
        const failed = results.find((r) => r.status === "rejected");
        if (failed) throw failed.reason;
        const gone = batch.some((p) => p.caller.signal.aborted || p.caller.deadline <= Date.now());
        if (gone || down.aborted) throw new CallerGone();
        committing = true;
      });
      await raceAbort(transaction, down, () => new DatabaseDown());
    } catch (err) {
      if (err instanceof DatabaseDown) {
        // Before COMMIT the server rolls the transaction back when it sees the connection close;
        // once COMMIT was sent, nobody knows.
        for (const p of batch) this.#reject(p, committing ? outcomeUnknown() : databaseUnavailable());
        return [];
      }
      if (committing && !isServerAnswer(err)) {
        for (const p of batch) this.#reject(p, outcomeUnknown());
        return [];
      }
      if (batch.length === 1) {
        // Alone, its own error is its answer (a server refusal, a timeout, an outage).
        const [p] = batch as [Pending];
        const failed = results?.[0];
        this.#reject(p, err instanceof CallerGone ? notStarted() : failed?.status === "rejected" ? failed.reason : err);
        return [];
      }
      return batch;
    }
    for (const [i, p] of batch.entries()) {
      const r = results?.[i];
      if (r?.status === "fulfilled") this.#resolve(p, r.value);
    }
    return [];
  }
}
