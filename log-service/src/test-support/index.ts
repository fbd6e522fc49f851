// log-service's test harness, for its tests and the log benchmark: a real log-service (in-process
// or as a child process), its clients, and events to send it. Never in an image.
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import {
  type LogEvent,
  LogEventSchema,
  LogLevel,
  LogService,
  type StreamLogsRequest,
  StreamLogsRequestSchema,
} from "@merch/gen/merch/log/v1/log_pb";
import { createLogger, GuardedSessionManager, sendServiceCredential, silenceKafkajsTimerWarnings } from "@merch/kit";
import { type ChannelRecord, REPO_ROOT } from "@merch/testkit";
import { type LogServiceHandle, startLogService } from "../app.ts";
import { loadConfig } from "../config.ts";

silenceKafkajsTimerWarnings();

export const SERVER_TS = join(REPO_ROOT, "log-service", "src", "server.ts");

/** The credential the test log-services run with; clients from here send it. */
export const TEST_LOG_CREDENTIAL = "test-log-credential-0123456789abcdef0123456789";

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `${prefix}-`));
}

export interface LogClients {
  baseUrl: string;
  /** The service's /metrics, on its metrics port. */
  metricsUrl: string;
  /** gRPC over h2c, as the gateway calls it. */
  grpc: Client<typeof LogService>;
  /** Connect JSON over HTTP/1.1, as a browser would. */
  connectJson: Client<typeof LogService>;
  grpcTransport: Transport;
  closeClients(): void;
}

export function logClients(port: number, metricsPort: number): LogClients {
  const baseUrl = `http://127.0.0.1:${port}`;
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  // Owned here so that it can be closed: an open session keeps the test process alive.
  const h2 = new GuardedSessionManager(baseUrl);
  const interceptors = [sendServiceCredential(TEST_LOG_CREDENTIAL)];
  const grpcTransport = createGrpcTransport({ baseUrl, sessionManager: h2, interceptors });
  return {
    baseUrl,
    metricsUrl,
    grpc: createClient(LogService, grpcTransport),
    connectJson: createClient(
      LogService,
      createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false, interceptors }),
    ),
    grpcTransport,
    closeClients: () => h2.abort(),
  };
}

export interface InProcessLogService extends LogClients {
  service: LogServiceHandle;
  dataDir: string;
  stop(): Promise<void>;
}

/** log-service in this process, on a free port, with its own data directory. */
export async function startInProcess(env: Record<string, string> = {}): Promise<InProcessLogService> {
  const dataDir = env.DATA_DIR ?? tempDir("log-service");
  const config = loadConfig({
    PORT: "0",
    METRICS_PORT: "0",
    HOST: "127.0.0.1",
    SHUTDOWN_GRACE_MS: "5000",
    DATA_DIR: dataDir,
    SERVICE_CREDENTIAL: TEST_LOG_CREDENTIAL,
    ...env,
  });
  const service = await startLogService(config, createLogger("log-service", process.env.TEST_LOG_LEVEL ?? "silent"));
  const clients = logClients(service.port, service.metricsPort);
  return {
    ...clients,
    service,
    dataDir,
    async stop() {
      clients.closeClients();
      await service.close();
    },
  };
}

export interface ChildLogService extends LogClients {
  child: ChildProcess;
  port: number;
  /** Resolves with the exit code (or signal) once the process has ended. */
  exited: Promise<number | NodeJS.Signals>;
  /** Lines the process wrote to stdout (pino JSON). */
  output: string[];
}

/** `node log-service/src/server.ts` as a child process; resolves once it listens (logged at info). */
export async function spawnLogService(env: Record<string, string>): Promise<ChildLogService> {
  const child = spawn(process.execPath, [SERVER_TS], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      PORT: "0",
      METRICS_PORT: "0",
      HOST: "127.0.0.1",
      SERVICE_CREDENTIAL: TEST_LOG_CREDENTIAL,
      ...env,
      LOG_LEVEL: "info",
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const exited = new Promise<number | NodeJS.Signals>((done) =>
    child.once("exit", (code, signal) => done(code ?? signal ?? -1)),
  );
  const output: string[] = [];
  const [port, metricsPort] = await new Promise<[number, number]>((resolvePort, reject) => {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    let rpc: number | undefined;
    lines.on("line", (line) => {
      output.push(line);
      const entry = parseJson(line);
      if (entry && typeof entry.port === "number" && String(entry.msg).startsWith("listening")) rpc = entry.port;
      if (entry && typeof entry.port === "number" && entry.msg === "serving /metrics" && rpc !== undefined) {
        resolvePort([rpc, entry.port]);
      }
    });
    void exited.then((code) =>
      reject(new Error(`log-service exited (${code}) before listening:\n${output.join("\n")}`)),
    );
  });
  return { ...logClients(port, metricsPort), child, port, exited, output };
}

function parseJson(line: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(line);
    return typeof v === "object" && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A valid event; `seq` and `user` go into attributes so the tests can check order. */
export function logEvent(init: MessageInitShape<typeof LogEventSchema> = {}): LogEvent {
  return create(LogEventSchema, {
    id: randomUUID(),
    level: LogLevel.INFO,
    service: "gateway",
    event: "http.request",
    message: "GET /api/products -> 200",
    ...init,
  });
}

/** Events of `users` users (user_id 1..users) round-robin; every fifth has no user. */
export function userEvents(count: number, users: number, firstSeq = 0): LogEvent[] {
  return Array.from({ length: count }, (_, i) => {
    const seq = firstSeq + i;
    const user = i % 5 === 4 ? undefined : (seq % users) + 1;
    return logEvent({
      ...(user === undefined ? {} : { userId: user }),
      requestId: i % 10 === 9 ? "" : `req-${seq}`,
      time: i % 3 === 0 ? undefined : timestampFromMs(1_750_000_000_000 + seq),
      level: [LogLevel.DEBUG, LogLevel.INFO, LogLevel.WARN, LogLevel.ERROR][seq % 4],
      ...(i % 2 === 0
        ? { http: { method: "GET", path: `/api/products/${seq}`, status: 200, durationMs: 1.25 } }
        : { event: "order.placed" }),
      attributes: { seq: String(seq) },
    });
  });
}

export function batches(events: readonly LogEvent[], size: number): StreamLogsRequest[] {
  const out: StreamLogsRequest[] = [];
  for (let i = 0; i < events.length; i += size) {
    out.push(create(StreamLogsRequestSchema, { events: events.slice(i, i + size) }));
  }
  return out;
}

export async function* streamOf<T>(requests: readonly T[]): AsyncGenerator<T> {
  yield* requests;
}

/** For each user, the `seq` attributes of their records in the order they arrived (first copies only). */
export function seqsByUser(records: readonly ChannelRecord[]): Map<number, number[]> {
  const seen = new Set<string>();
  const out = new Map<number, number[]>();
  for (const { record } of records) {
    if (seen.has(record.id) || record.user_id === null) continue;
    seen.add(record.id);
    const list = out.get(record.user_id) ?? [];
    list.push(Number(record.attributes.seq));
    out.set(record.user_id, list);
  }
  return out;
}

export function isAscending(list: readonly number[]): boolean {
  return list.every((v, i) => i === 0 || v > (list[i - 1] as number));
}

/** The samples of /metrics, by name. */
export async function metricsOf(metricsUrl: string): Promise<Map<string, number>> {
  const text = await (await fetch(metricsUrl)).text();
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^([a-z_]+) (\S+)$/.exec(line);
    if (m) out.set(m[1] as string, Number(m[2]));
  }
  return out;
}

export interface StatusBody {
  sink: "kafka" | "file";
  connected: boolean;
  accepting: boolean;
  spool: { bytes: number; events: number; max_bytes: number };
  dropped: number;
  accepted: number;
  rejected: number;
}

export async function statusOf(baseUrl: string): Promise<StatusBody> {
  return (await (await fetch(`${baseUrl}/status`)).json()) as StatusBody;
}

/** Polls until `check` holds; the deadline only keeps a broken run from hanging. */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T>,
  check: (v: T) => boolean,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (check(v)) return v;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(v)} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
