// Debian's real Prometheus server and promtool, so tests can prove that a /metrics endpoint is
// valid exposition text and is actually scraped and queryable, not just that it returns 200.
import { spawn } from "node:child_process";
import { rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fetchWithin, freePort, makeRunDir, poll, spawnOwned, tail } from "@merch/testkit";
import { requireCommand } from "./commands.ts";

const READY_TIMEOUT_MS = 30_000;
const PROMTOOL_TIMEOUT_MS = 30_000;
const REQUEST_TIMEOUT_MS = 5_000;

export interface ScrapeTarget {
  job: string;
  /** e.g. http://127.0.0.1:1234/metrics */
  url: string;
}

export interface Sample {
  metric: Record<string, string>;
  /** [unix seconds, value as Prometheus prints it] */
  value: [number, string];
}

export interface TargetHealth {
  job: string;
  url: string;
  health: "up" | "down" | "unknown";
  lastError: string;
  lastScrape: string;
  labels: Record<string, string>;
}

export interface PrometheusServer {
  url: string;
  dataDir: string;
  query(promql: string): Promise<Sample[]>;
  /** Resolves with the first non-empty result of `promql`. */
  waitForSeries(promql: string, timeoutMs: number): Promise<Sample[]>;
  targets(): Promise<TargetHealth[]>;
  stop(): Promise<void>;
}

export interface MetricsCheck {
  ok: boolean;
  /** promtool's lines: parse errors and lint findings such as a counter without `_total`. */
  problems: string[];
}

/**
 * Lints Prometheus text exposition with `promtool check metrics`. promtool writes every finding
 * to stderr and exits 0 when clean, 3 for lint findings and 1 when the text does not parse.
 */
export async function checkMetrics(text: string): Promise<MetricsCheck> {
  const promtool = await requireCommand("promtool", "prometheus");
  const { code, output } = await runWithStdin(promtool, ["check", "metrics"], text, PROMTOOL_TIMEOUT_MS);
  const problems = output
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean);
  if (code === 0) return { ok: problems.length === 0, problems };
  if (code === 1 || code === 3) return { ok: false, problems };
  throw new Error(`promtool check metrics exited ${code}:\n${output}`);
}

export async function startPrometheus(opts: {
  targets: ScrapeTarget[];
  scrapeIntervalMs?: number;
}): Promise<PrometheusServer> {
  const binary = await requireCommand("prometheus", "prometheus");
  const dataDir = await makeRunDir("merch-prometheus");
  try {
    const configFile = join(dataDir, "prometheus.yml");
    const logFile = join(dataDir, "prometheus.log");
    await writeFile(configFile, scrapeConfig(opts.targets, opts.scrapeIntervalMs ?? 1000));
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const args = [
      `--config.file=${configFile}`,
      `--web.listen-address=127.0.0.1:${port}`,
      `--storage.tsdb.path=${join(dataDir, "tsdb")}`,
      "--storage.tsdb.retention.time=1h",
      "--storage.tsdb.wal-compression",
      // The consoles are for people; a test only needs the HTTP API.
      `--web.console.templates=${join(dataDir, "no-consoles")}`,
      `--web.console.libraries=${join(dataDir, "no-consoles")}`,
      "--query.max-concurrency=4",
      "--log.level=warn",
    ];
    // One OS thread for Go code keeps it from competing with the tests for both cores.
    const proc = spawnOwned(binary, args, { logFile, env: { ...process.env, GOMAXPROCS: "1" }, cwd: dataDir });
    const stop = async () => {
      await proc.stop();
      await rm(dataDir, { recursive: true, force: true });
    };
    try {
      await poll(
        `Prometheus on ${url} ready`,
        READY_TIMEOUT_MS,
        async () => ((await fetchWithin(`${url}/-/ready`, REQUEST_TIMEOUT_MS)).ok ? true : undefined),
        { abort: () => (proc.hasExited() ? `exited early. Tail of ${logFile}:\n${tail(logFile, 30)}` : undefined) },
      );
    } catch (err) {
      await stop();
      throw err;
    }

    const query = async (promql: string): Promise<Sample[]> => {
      const data = await api<{ resultType: string; result: unknown }>(`${url}/api/v1/query`, { query: promql });
      if (data.resultType !== "vector") throw new Error(`${promql} gave a ${data.resultType}, not an instant vector`);
      return data.result as Sample[];
    };
    const targets = async (): Promise<TargetHealth[]> => {
      const data = await api<{ activeTargets: ActiveTarget[] }>(`${url}/api/v1/targets`, { state: "active" });
      return data.activeTargets.map((t) => ({
        job: t.scrapePool,
        url: t.scrapeUrl,
        health: t.health,
        lastError: t.lastError,
        lastScrape: t.lastScrape,
        labels: t.labels,
      }));
    };
    const waitForSeries = async (promql: string, timeoutMs: number): Promise<Sample[]> => {
      // Asked once outside the loop so that a PromQL mistake fails now, not at the deadline.
      const first = await query(promql);
      if (first.length > 0) return first;
      try {
        return await poll(`series for ${promql}`, timeoutMs, async () => {
          const result = await query(promql);
          return result.length > 0 ? result : undefined;
        });
      } catch (err) {
        // Scrape health is what explains a missing series, so the error carries it.
        const health = await targets().then(
          (list) => list.map((t) => `${t.job} ${t.url}: ${t.health} ${t.lastError}`).join("\n"),
          (e: Error) => `(targets unavailable: ${e.message})`,
        );
        throw new Error(`${(err as Error).message}\nScrape targets:\n${health}`);
      }
    };
    return { url, dataDir, query, waitForSeries, targets, stop };
  } catch (err) {
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
}

interface ActiveTarget {
  scrapePool: string;
  scrapeUrl: string;
  health: "up" | "down" | "unknown";
  lastError: string;
  lastScrape: string;
  labels: Record<string, string>;
}

// JSON is valid YAML, and building it as an object avoids any quoting mistakes. Each target keeps
// its own path, scheme and query through Prometheus' reserved target labels.
function scrapeConfig(targets: ScrapeTarget[], intervalMs: number): string {
  const interval = `${Math.max(1, Math.round(intervalMs))}ms`;
  const jobs = new Map<string, { targets: string[]; labels: Record<string, string> }[]>();
  for (const target of targets) {
    const u = new URL(target.url);
    const labels: Record<string, string> = { __scheme__: u.protocol.replace(/:$/, ""), __metrics_path__: u.pathname };
    for (const [name, value] of u.searchParams) labels[`__param_${name}`] = value;
    const groups = jobs.get(target.job) ?? [];
    groups.push({ targets: [u.host], labels });
    jobs.set(target.job, groups);
  }
  const config = {
    global: { scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval },
    scrape_configs: [...jobs].map(([job, static_configs]) => ({ job_name: job, static_configs })),
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

async function api<T>(endpoint: string, params: Record<string, string>): Promise<T> {
  const res = await fetchWithin(`${endpoint}?${new URLSearchParams(params)}`, REQUEST_TIMEOUT_MS);
  const body = (await res.json()) as { status: string; data?: T; error?: string; errorType?: string };
  if (!res.ok || body.status !== "success" || body.data === undefined) {
    throw new Error(`${endpoint} answered ${res.status}: ${body.errorType ?? ""} ${body.error ?? ""}`.trim());
  }
  return body.data;
}

function runWithStdin(
  file: string,
  args: string[],
  input: string,
  timeoutMs: number,
): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ["pipe", "pipe", "pipe"], timeout: timeoutMs, killSignal: "SIGKILL" });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once("error", reject);
    child.once("close", (code, signal) => {
      if (code === null) reject(new Error(`${file} ${args.join(" ")} was killed (${signal}) after ${timeoutMs} ms`));
      else resolve({ code, output });
    });
    // promtool may exit before reading everything (a parse error); that EPIPE is not our failure.
    child.stdin.on("error", () => {});
    child.stdin.end(input);
  });
}
