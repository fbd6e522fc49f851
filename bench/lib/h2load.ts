// h2load (nghttp2) as the load generator for db-service's PlaceOrder: Connect binary over h2c, one
// HTTP/2 connection with `streams` calls in flight, as the gateway's single session carries them.
// A C client, so the direct scenario is not handicapped by a Node client's CPU next to wrk's.
// h2load reports no percentiles: they come from its per-request log.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireCommand } from "@merch/devstack";
import { type LoadResult, summarize } from "./load.ts";
import { run } from "./run-command.ts";

export interface H2Load {
  url: string;
  headers: Readonly<Record<string, string>>;
  body: Uint8Array;
}

export async function h2loadGenerator() {
  const h2load = await requireCommand("h2load", "nghttp2-client");
  return {
    name: "h2load",
    async run(load: H2Load, streams: number, durationS: number): Promise<LoadResult> {
      const dir = mkdtempSync(join(tmpdir(), "merch-h2load-"));
      try {
        const data = join(dir, "body.bin");
        const log = join(dir, "requests.log");
        writeFileSync(data, load.body);
        const args = [
          "-c1",
          `-m${streams}`,
          `-D${durationS}`,
          "-d",
          data,
          ...Object.entries(load.headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]),
          "--log-file",
          log,
          load.url,
        ];
        const out = await run(h2load, args);
        // One line per request: start (µs since the epoch), status, duration (µs).
        const lines = readFileSync(log, "utf8").trim().split("\n").filter(Boolean);
        const latencies: number[] = [];
        const statuses: Record<string, number> = {};
        for (const line of lines) {
          const [, status, us] = line.split("\t");
          latencies.push(Number(us) / 1000);
          statuses[status ?? "?"] = (statuses[status ?? "?"] ?? 0) + 1;
        }
        const seconds = Number(/finished in ([\d.]+)s/.exec(out)?.[1] ?? durationS);
        const errored = Number(/(\d+) errored/.exec(out)?.[1] ?? 0) + Number(/(\d+) timeout/.exec(out)?.[1] ?? 0);
        // Every logged line is an answer: those not 200 failed, and errors are counted apart.
        return { ...summarize(latencies, seconds, statuses, statuses["200"] ?? 0, 0), errors: errored };
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
