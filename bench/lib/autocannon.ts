// autocannon as the HTTP load generator, kept so the choice of wrk can be checked again
// (`--loadgen autocannon`): it runs inside the bench's own Node process.
import autocannon from "autocannon";
import type { HttpGenerator, HttpRun, LoadResult } from "./load.ts";

let runs = 0;

export function autocannonGenerator(): HttpGenerator {
  return {
    name: "autocannon",
    kind: "in-process",
    async run({ load, connections, durationS }: HttpRun): Promise<LoadResult> {
      const runId = `${process.pid}-${++runs}`;
      let counter = 0;
      const pick = <T>(items: readonly T[] | undefined, i: number): T | undefined =>
        items && items.length > 0 ? items[i % items.length] : undefined;
      const request: autocannon.Request = {
        method: load.method,
        setupRequest: (req) => {
          const i = ++counter;
          const headers: Record<string, string> = { ...load.headers };
          const token = pick(load.tokens, i);
          if (token !== undefined) headers.authorization = `Bearer ${token}`;
          if (load.idempotencyKey) headers["idempotency-key"] = `bench-${runId}-${i}`;
          const body = pick(load.bodies, i);
          return { ...req, path: pick(load.paths, i) ?? "/", headers, ...(body === undefined ? {} : { body }) };
        },
      };
      const result = await autocannon({ url: load.url, connections, duration: durationS, requests: [request] });
      return {
        requests: result.requests.total,
        seconds: result.duration,
        p50: result.latency.p50,
        p99: result.latency.p99,
        max: result.latency.max,
        failed: result.non2xx,
        errors: result.errors + result.timeouts,
      };
    },
  };
}
