import { rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { fetchWithin, freePort, makeRunDir, mavenJars, poll, spawnOwned, tail } from "@merch/testkit";
import { type OtlpReceived, type OtlpReceiver, startOtlpReceiver, type ZipkinSpan } from "./otlp-zipkin.ts";

export type { OtlpReceived, ZipkinSpan } from "./otlp-zipkin.ts";

// Must match <zipkin.version> in devstack/zipkin/pom.xml (the test checks it).
export const ZIPKIN_VERSION = "3.6.1";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const pomPath = join(repoRoot, "devstack", "zipkin", "pom.xml");
const jarName = `zipkin-server-${ZIPKIN_VERSION}-slim.jar`;
const READY_TIMEOUT_MS = 90_000;
const REQUEST_TIMEOUT_MS = 10_000;

/** Zipkin's GET /api/v2/traces parameters; times are epoch milliseconds, durations microseconds. */
export interface TraceQuery {
  serviceName?: string;
  remoteServiceName?: string;
  spanName?: string;
  annotationQuery?: string;
  minDuration?: number;
  maxDuration?: number;
  endTs?: number;
  lookback?: number;
  limit?: number;
}

export interface ZipkinServer {
  /** Base URL for OTEL_EXPORTER_OTLP_ENDPOINT (OTLP/HTTP, protobuf or JSON, at /v1/traces). */
  otlpEndpoint: string;
  /** Zipkin itself: UI, /api/v2 query API and its native /api/v2/spans collector. */
  url: string;
  /** What arrived over OTLP so far: tells "nothing was exported" apart from "not stored yet". */
  otlpReceived(): OtlpReceived;
  traces(query?: TraceQuery): Promise<ZipkinSpan[][]>;
  trace(traceId: string): Promise<ZipkinSpan[] | undefined>;
  /** Polls the query API until a trace satisfies `predicate`, and returns that trace. */
  waitForTrace(
    predicate: (spans: ZipkinSpan[]) => boolean,
    timeoutMs: number,
    query?: TraceQuery,
  ): Promise<ZipkinSpan[]>;
  stop(): Promise<void>;
}

/** Path of the Zipkin server jar, fetched by Maven into .cache/zipkin on first use. */
async function zipkinJar(): Promise<string> {
  const cacheDir = resolve(process.env.ZIPKIN_CACHE_DIR ?? join(repoRoot, ".cache", "zipkin"));
  const libs = await mavenJars({
    pom: pomPath,
    dir: join(cacheDir, `zipkin-${ZIPKIN_VERSION}`),
    expect: jarName,
    mismatch: `${pomPath} does not pin Zipkin ${ZIPKIN_VERSION} (ZIPKIN_VERSION in devstack/src/zipkin.ts)`,
  });
  return join(libs, jarName);
}

export async function startZipkin(): Promise<ZipkinServer> {
  const jar = await zipkinJar();
  const workDir = await makeRunDir("merch-zipkin");
  const logFile = join(workDir, "zipkin.log");
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const jvm = [
    // A small heap and the serial collector keep it out of the way of tests on two cores;
    // C1-only JIT starts faster and a test run never lives long enough to profit from C2.
    "-Xms32m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
    "-jar",
    jar,
    // Replaces Zipkin's default listener (all interfaces, 9411) with one on loopback only.
    `--armeria.ports[0].ip=127.0.0.1`,
    `--armeria.ports[0].port=${port}`,
    "--armeria.ports[0].protocols[0]=http",
  ];
  const env = { ...process.env, STORAGE_TYPE: "mem", MEM_MAX_SPANS: "100000", SELF_TRACING_ENABLED: "false" };
  const proc = spawnOwned(javaBin(), jvm, { logFile, env, cwd: workDir });
  let receiver: OtlpReceiver | undefined;
  const stop = async () => {
    await receiver?.close();
    // In-memory storage has nothing to flush, and Spring's orderly shutdown takes over 2 s.
    await proc.stop({ graceful: false });
    await rm(workDir, { recursive: true, force: true });
  };

  try {
    await poll(
      `Zipkin on ${url} ready`,
      READY_TIMEOUT_MS,
      async () => ((await fetchWithin(`${url}/health`, REQUEST_TIMEOUT_MS)).ok ? true : undefined),
      {
        intervalMs: 250,
        abort: () => (proc.hasExited() ? `exited early. Tail of ${logFile}:\n${tail(logFile, 40)}` : undefined),
      },
    );
    receiver = await startOtlpReceiver(url);
  } catch (err) {
    await stop();
    throw err;
  }

  const getJson = async <T>(path: string): Promise<T | undefined> => {
    const res = await fetchWithin(`${url}${path}`, REQUEST_TIMEOUT_MS);
    if (res.status === 404) return undefined;
    if (!res.ok) throw new Error(`GET ${url}${path} answered ${res.status}: ${await res.text()}`);
    return (await res.json()) as T;
  };
  const traces = async (query: TraceQuery = {}) => {
    const params = new URLSearchParams(Object.entries(query).map(([k, v]): [string, string] => [k, String(v)]));
    return (await getJson<ZipkinSpan[][]>(`/api/v2/traces?${params}`)) ?? [];
  };
  const trace = (traceId: string) => getJson<ZipkinSpan[]>(`/api/v2/trace/${encodeURIComponent(traceId)}`);
  const otlp = receiver;
  const waitForTrace = async (predicate: (spans: ZipkinSpan[]) => boolean, timeoutMs: number, query?: TraceQuery) => {
    try {
      return await poll(`a matching trace in Zipkin at ${url}`, timeoutMs, async () =>
        (await traces({ limit: 100, ...query })).find(predicate),
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; received over OTLP so far: ${JSON.stringify(otlp.received())}`);
    }
  };

  return { otlpEndpoint: otlp.url, url, otlpReceived: () => otlp.received(), traces, trace, waitForTrace, stop };
}

function javaBin(): string {
  return process.env.JAVA_HOME ? join(process.env.JAVA_HOME, "bin", "java") : "java";
}
