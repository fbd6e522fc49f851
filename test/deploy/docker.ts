// A Docker engine for test/deploy/compose-up.test.ts: the running daemon, or one this process
// starts (as root, where docker.io is installed) and stops again, plus a `docker` runner.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

/** What the CLI needs and nothing of the caller's: the classic builder (no buildx plugin here). */
export const DOCKER_ENV: NodeJS.ProcessEnv = {
  PATH: process.env.PATH ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  HOME: process.env.HOME ?? "/root",
  DOCKER_BUILDKIT: "0",
};

export interface RunOptions {
  timeoutMs?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

export async function run(command: string, args: string[], opts: RunOptions = {}): Promise<string> {
  try {
    const { stdout } = await execFileP(command, args, {
      timeout: opts.timeoutMs ?? 120_000,
      cwd: opts.cwd,
      env: opts.env ?? DOCKER_ENV,
      maxBuffer: 1 << 26,
    });
    return stdout;
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string; killed?: boolean };
    const output = `${e.stdout ?? ""}${e.stderr ?? ""}`.trim().split("\n").slice(-40).join("\n");
    throw new Error(`${command} ${args.join(" ")} ${e.killed ? "timed out" : "failed"}:\n${output || e.message}`);
  }
}

export const docker = (args: string[], opts: RunOptions = {}): Promise<string> => run("docker", args, opts);

async function daemonAnswers(): Promise<boolean> {
  return docker(["info", "--format", "{{.ServerVersion}}"], { timeoutMs: 20_000 }).then(
    () => true,
    () => false,
  );
}

function onPath(command: string): boolean {
  return (process.env.PATH ?? "").split(":").some((dir) => dir !== "" && existsSync(join(dir, command)));
}

export type Engine =
  | { available: true; started: boolean; stop(): Promise<void> }
  | { available: false; reason: string };

const STATE_DIR = "/var/tmp/merch-dockerd";

/**
 * The Docker daemon: the one already running, else `dockerd` started here (root only), with its
 * log and pid file in /var/tmp/merch-dockerd. stop() stops only a daemon this call started, and
 * leaves it running while other containers (another checkout's run) still use it.
 */
export async function dockerEngine(): Promise<Engine> {
  if (!onPath("docker")) return { available: false, reason: "the docker CLI is not installed (npm run provision)" };
  if (await daemonAnswers()) return { available: true, started: false, stop: async () => {} };
  if (process.getuid?.() !== 0)
    return { available: false, reason: "no Docker daemon runs, and only root can start one" };
  if (!onPath("dockerd")) return { available: false, reason: "dockerd is not installed (npm run provision)" };

  mkdirSync(STATE_DIR, { recursive: true });
  const log = openSync(join(STATE_DIR, "dockerd.log"), "a");
  const pidFile = join(STATE_DIR, "dockerd.pid");
  const child: ChildProcess = spawn("dockerd", ["--pidfile", pidFile], {
    stdio: ["ignore", log, log],
    detached: true,
  });
  closeSync(log);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const deadline = Date.now() + 60_000;
  while (!(await daemonAnswers())) {
    // Another test started one at the same moment: then that one is used, and left to its owner.
    if (gone && (await daemonAnswers())) return { available: true, started: false, stop: async () => {} };
    if (gone || Date.now() > deadline) {
      child.kill("SIGTERM");
      const tail = readFileSync(join(STATE_DIR, "dockerd.log"), "utf8").split("\n").slice(-15).join("\n");
      return { available: false, reason: `dockerd did not start within 60 s:\n${tail}` };
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  return {
    available: true,
    started: true,
    async stop() {
      if (gone) return;
      // Containers still running belong to someone else's run (another checkout's test).
      const others = await docker(["ps", "-q"], { timeoutMs: 20_000 }).catch(() => "");
      if (others.trim() !== "") return;
      // dockerd stops its containers (none are left by then) and containerd on SIGTERM.
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
