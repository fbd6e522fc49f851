// What every load generator reports, and the HTTP load the REST and Connect JSON scenarios ask of
// wrk or autocannon: the same description drives either, so their cost per request can be compared.

/** An HTTP/1.1 load: request i uses entry i mod length of every list. */
export interface HttpLoad {
  url: string;
  method: "GET" | "POST";
  /** Request paths (with the query), rotated. */
  paths: readonly string[];
  headers?: Readonly<Record<string, string>>;
  /** Bearer tokens, rotated: `authorization: Bearer <token>`. */
  tokens?: readonly string[];
  /** Bodies, rotated. */
  bodies?: readonly string[];
  /** A fresh Idempotency-Key header on every request. */
  idempotencyKey?: boolean;
}

export interface LoadResult {
  /** Requests answered in the measured time. */
  requests: number;
  /** Measured wall time, seconds. */
  seconds: number;
  /** Latency percentiles in ms. */
  p50: number;
  p99: number;
  max: number;
  /** Answers with status ≥ 400 (or RPCs that failed). */
  failed: number;
  /** Connection errors and timeouts. */
  errors: number;
  /** Counts by status where the generator recorded them (the flash sale, the RPC generator). */
  statuses?: Record<string, number>;
}

export interface HttpRun {
  load: HttpLoad;
  connections: number;
  durationS: number;
}

/** A load generator: runs one load and reports; `kind` says where its CPU time is found. */
export interface HttpGenerator {
  name: string;
  /** "child": a process the bench waits for (its CPU arrives in the bench's reaped-children time). */
  kind: "child" | "in-process";
  run(run: HttpRun): Promise<LoadResult>;
}

/** The p-th percentile of an ascending list. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;
}

/** The report of a run from each request's latency (ms, any order) and outcome counts. */
export function summarize(
  latencies: number[],
  seconds: number,
  statuses: Record<string, number>,
  ok: number,
  errors: number,
): LoadResult {
  latencies.sort((a, b) => a - b);
  return {
    requests: latencies.length,
    seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: latencies.at(-1) ?? Number.NaN,
    failed: latencies.length - ok - errors,
    errors,
    statuses,
  };
}
