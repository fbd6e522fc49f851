import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { REPO_ROOT } from "@merch/testkit";

// `npm start` as a person runs it in a terminal, for the tests that start, interrupt and restart
// it on one data directory (start-interrupted, start-removed-data).

export type StartPorts = Record<"gateway" | "db" | "log" | "pg", number>;

export interface NpmStart {
  child: ChildProcess;
  /** Its exit code once it has exited (null when a signal ended it). */
  exited: Promise<number | null>;
  /** Everything it printed so far, stdout and stderr. */
  output: () => string;
}

/** Sends a signal to the whole process group, as Ctrl-C in a terminal does; quiet if it is gone. */
export function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/**
 * Starts scripts/start.ts in a process group of its own; it is killed if the test process exits.
 * `env` adds to or overrides its environment (undefined removes a variable).
 */
export function npmStart(dataDir: string, ports: StartPorts, env: Record<string, string | undefined> = {}): NpmStart {
  const child = spawn(process.execPath, [join(REPO_ROOT, "scripts", "start.ts")], {
    cwd: REPO_ROOT,
    detached: true,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "",
      DATA_DIR: dataDir,
      GATEWAY_PORT: String(ports.gateway),
      DB_SERVICE_PORT: String(ports.db),
      LOG_SERVICE_PORT: String(ports.log),
      PG_PORT: String(ports.pg),
      LOG_FORMAT: "json",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const collect = (d: Buffer) => {
    output += d.toString();
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  process.once("exit", () => signalGroup(child, "SIGKILL"));
  return { child, exited, output: () => output };
}
