// A closed-loop load from inside the bench: `concurrency` callers, each starting its next call as
// soon as the last one ended, for a fixed time. For what wrk cannot send (Connect binary over h2c
// to db-service, statements straight to PostgreSQL); its CPU is the bench process's own.
import { type LoadResult, summarize } from "./load.ts";

/** One call; resolves with an outcome label ("ok", or why it failed). */
export type Call = (i: number) => Promise<string>;

export async function closedLoop(call: Call, concurrency: number, durationS: number): Promise<LoadResult> {
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let next = 0;
  let errors = 0;
  const started = performance.now();
  const end = started + durationS * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const i = next++;
        const t = performance.now();
        let outcome: string;
        try {
          outcome = await call(i);
        } catch (err) {
          errors++;
          outcome = err instanceof Error ? err.message.slice(0, 80) : String(err);
        }
        latencies.push(performance.now() - t);
        statuses[outcome] = (statuses[outcome] ?? 0) + 1;
      }
    }),
  );
  return summarize(latencies, (performance.now() - started) / 1000, statuses, statuses.ok ?? 0, errors);
}
