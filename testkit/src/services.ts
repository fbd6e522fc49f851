import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { buildServiceJs, JS_HOOKS } from "@merch/kit/js-build";
import { prettyFactory } from "pino-pretty";
import { REPO_ROOT } from "./paths.ts";

// One service of the store as a child process, started from its real entrypoint.

export type ServiceName = "db-service" | "log-service" | "gateway";

export interface ServiceProcess {
  readonly name: ServiceName;
  readonly url: string;
  readonly child: ChildProcess;
  /** What the process printed so far (when its output is captured). */
  output(): string;
  /** Resolves with the exit code (or the signal's name) when the current process exits. */
  exited(): Promise<number | string>;
  /** SIGTERM (or the given signal), then waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the service again with the same settings. */
  start(): void;
}

/**
 * V8 heap limits per service (the Dockerfile sets the same through NODE_OPTIONS). Without them
 * V8 lets a busy service's heap grow to several hundred MB of garbage before collecting; with
 * them each stays under 150 MB resident. log-service gets a larger old space: it holds batches
 * on their way to Kafka, and at 48 MB it spent a third of its time collecting. The gateway holds
 * about 3 KB for each open connection its HTTP server has not set up (gateway/src/admission.ts
 * keeps Node's parser, about 10 KB a connection, to connections sending a request and a bounded
 * few idle ones); its live heap in the flash sale is still about 55 MB, and with less old space
 * it collects too often: at 96 MB garbage collection was 26 % of its profile and the sale sold out
 * after more than 3 s in two runs of three, at 64 MB its CPU per request nearly doubled. The
 * requests it holds are bounded by HTTP_MAX_REQUESTS_IN_FLIGHT (gateway/src/admission.ts).
 * db-service's young generation is 4 MB a semi-space: at 2 MB collecting was a fifth of its
 * profile under `POST /orders` (each scavenge copies the orders in flight, so fewer scavenges cost
 * less), for some 3 MB more resident (122 MB at most, the flash sale included). bench/results.md
 * has the measurements.
 */
export const SERVICE_NODE_FLAGS: Record<ServiceName, string[]> = {
  "db-service": ["--max-semi-space-size=4", "--max-old-space-size=48"],
  "log-service": ["--max-semi-space-size=4", "--max-old-space-size=56"],
  gateway: ["--max-semi-space-size=2", "--max-old-space-size=128"],
};

const COLOURS: Record<ServiceName, string> = {
  "db-service": "\u001b[36m",
  "log-service": "\u001b[35m",
  gateway: "\u001b[32m",
};

const ENTRY: Record<ServiceName, string> = {
  "db-service": "db-service/src/server.ts",
  "log-service": "log-service/src/server.ts",
  gateway: "gateway/src/server.ts",
};

/**
 * Where a service's output goes: kept for the caller ("capture"), or printed here, either as the
 * JSON lines the service writes, untouched so a log shipper can read them (they name their
 * service), or made readable for a person ("pretty": one coloured line per entry, prefixed with
 * the service's name). Anything that is not a log line (a crash's stack) is prefixed in both.
 */
export type OutputMode = "capture" | "json" | "pretty";

const pretty = prettyFactory({
  colorize: true,
  singleLine: true,
  translateTime: "SYS:HH:MM:ss.l",
  ignore: "pid,hostname,name",
});

/** Runs a service's real entrypoint; `port` undefined leaves PORT to `env`. */
export function runService(
  name: ServiceName,
  port: number | undefined,
  env: Record<string, string>,
  output: OutputMode,
): ServiceProcess {
  let captured = "";
  let child: ChildProcess;
  let exit: Promise<number | string>;
  const start = () => {
    // The service runs the JavaScript of its sources, stripped here when they changed, not the
    // sources themselves: Node's type stripper would stay resident in it (kit/src/js-build.ts).
    // SERVICES_FROM_SOURCES=1 runs the TypeScript itself (to compare, or for a debugger).
    const fromSources = process.env.SERVICES_FROM_SOURCES === "1";
    if (!fromSources) buildServiceJs(REPO_ROOT);
    const args = [
      ...SERVICE_NODE_FLAGS[name],
      ...(fromSources ? [] : ["--import", JS_HOOKS]),
      join(REPO_ROOT, ENTRY[name]),
    ];
    child = spawn(process.execPath, args, {
      cwd: REPO_ROOT,
      // A free metrics port unless one is named: services started side by side never collide.
      env: { ...process.env, METRICS_PORT: "0", ...env, ...(port === undefined ? {} : { PORT: String(port) }) },
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group: Ctrl-C reaches only the parent, which stops services in order.
      detached: true,
    });
    const current = child;
    exit = new Promise((resolve) => current.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown")));
    if (output === "capture") {
      const keep = (chunk: Buffer) => {
        captured += chunk.toString();
      };
      child.stdout?.on("data", keep);
      child.stderr?.on("data", keep);
    } else {
      const tag = output === "pretty" ? `${COLOURS[name]}${name.padEnd(11)}\u001b[0m` : `[${name}]`;
      const print = (line: string) => {
        if (line === "") return;
        const entry = line.startsWith("{");
        if (entry && output === "json") process.stdout.write(`${line}\n`);
        else process.stdout.write(`${tag} ${entry ? pretty(line).trimEnd() : line}\n`);
      };
      for (const stream of [child.stdout, child.stderr]) {
        if (stream) createInterface({ input: stream }).on("line", print);
      }
    }
  };
  start();
  // A test or start script that dies must not leave services behind.
  process.once("exit", () => child.kill("SIGKILL"));
  return {
    name,
    url: `http://127.0.0.1:${port}`,
    get child() {
      return child;
    },
    output: () => captured,
    exited: () => exit,
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exit;
    },
    start,
  };
}

/** Waits until the service has printed something matching `pattern`. */
export async function waitForOutput(service: ServiceProcess, pattern: RegExp, timeoutMs = 20_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const match = pattern.exec(service.output());
    if (match) return match[0];
    if (service.child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no output matching ${pattern} within ${timeoutMs} ms; output:\n${service.output()}`);
}
