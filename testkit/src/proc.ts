// Shared plumbing for the launchers: child servers that never outlive the test process, free
// ports, and polling that always ends at a deadline.
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const SETPRIV = "/usr/bin/setpriv";
const KILL_AFTER_MS = 10_000;

const children = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

export interface OwnedProcess {
  pid: number;
  /** Settles when the process has exited, for whatever reason. */
  exited: Promise<void>;
  hasExited(): boolean;
  /** SIGTERM, then SIGKILL if it is still running after a grace period; or SIGKILL at once. */
  stop(opts?: { graceful?: boolean }): Promise<void>;
}

export function spawnOwned(
  command: string,
  args: string[],
  opts: { logFile: string; env?: NodeJS.ProcessEnv; cwd?: string },
): OwnedProcess {
  const out = openSync(opts.logFile, "a");
  // setpriv makes the kernel kill the server even if this process dies without running 'exit'
  // handlers (SIGKILL, a crash), so no test run leaves a server behind.
  const [file, argv] = existsSync(SETPRIV) ? [SETPRIV, ["--pdeathsig", "KILL", command, ...args]] : [command, args];
  let child: ChildProcess;
  try {
    child = spawn(file, argv, { stdio: ["ignore", out, out], env: opts.env ?? process.env, cwd: opts.cwd });
  } finally {
    closeSync(out);
  }
  children.add(child);
  let gone = false;
  const exited = new Promise<void>((resolve) => {
    const done = () => {
      gone = true;
      children.delete(child);
      resolve();
    };
    child.once("exit", done);
    // A spawn failure emits 'error' and never 'exit'.
    child.once("error", done);
  });
  const stop = async ({ graceful = true } = {}) => {
    if (gone) return;
    child.kill(graceful ? "SIGTERM" : "SIGKILL");
    const timer = setTimeout(() => child.kill("SIGKILL"), KILL_AFTER_MS);
    await exited;
    clearTimeout(timer);
  };
  return { pid: child.pid ?? -1, exited, hasExited: () => gone, stop };
}

/**
 * A fresh temp dir named after this process. Dirs left by processes that died without cleaning
 * up (SIGKILL, a crash: their servers died with them through pdeathsig) are removed first.
 */
export async function makeRunDir(prefix: string): Promise<string> {
  const pattern = new RegExp(`^${prefix}-(\\d+)-`);
  for (const name of await readdir(tmpdir()).catch(() => [])) {
    const pid = Number(pattern.exec(name)?.[1]);
    if (pid && pid !== process.pid && !isAlive(pid)) {
      await rm(join(tmpdir(), name), { recursive: true, force: true }).catch(() => {});
    }
  }
  return mkdtemp(join(tmpdir(), `${prefix}-${process.pid}-`));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive, but someone else's.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Calls `probe` until it returns a value other than undefined, at most until the deadline.
 * `abort` (checked between probes) ends the wait early, e.g. when the server has exited.
 */
export async function poll<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
  opts: { intervalMs?: number; abort?: () => string | undefined } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    const reason = opts.abort?.();
    if (reason) throw new Error(`${what}: ${reason}`);
    try {
      const value = await probe();
      if (value !== undefined) return value;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const cause = lastError instanceof Error ? ` (last error: ${lastError.message})` : "";
      throw new Error(`${what}: not within ${timeoutMs} ms${cause}`);
    }
    await new Promise((resolve) => setTimeout(resolve, opts.intervalMs ?? 200));
  }
}

/** fetch with its own deadline, so a hung server cannot stall a poll loop. */
export function fetchWithin(url: string, timeoutMs: number, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
}

export function tail(file: string, lines: number): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}
