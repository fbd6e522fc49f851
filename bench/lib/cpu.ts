// CPU time and peak memory of the processes a scenario exercises, read from /proc before and
// after it. A process's own time (utime + stime) covers all its threads; the time of children it
// has reaped (cutime + cstime) is added, so PostgreSQL backends that exit during a scenario, and a
// load generator the bench waited for, are not lost.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";

const TICKS_PER_SECOND = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

/** CPU seconds of one process: its own, and its reaped children's. */
export interface ProcTimes {
  own: number;
  children: number;
}

export function procTimes(pid: number): ProcTimes | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name is in parentheses and may itself hold spaces or parentheses: fields are
  // counted from the last ")". After it come state (field 3) ... utime (14), stime (15),
  // cutime (16), cstime (17).
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const at = (field: number) => Number(fields[field - 3] ?? 0);
  return {
    own: (at(14) + at(15)) / TICKS_PER_SECOND,
    children: (at(16) + at(17)) / TICKS_PER_SECOND,
  };
}

/** The pids of a process and all its live descendants. */
export function processTree(root: number): number[] {
  const out: number[] = [];
  const walk = (pid: number) => {
    out.push(pid);
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      return;
    }
    // Each thread lists the children it started; a process's children are the union.
    for (const tid of tasks) {
      let children = "";
      try {
        children = readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8");
      } catch {}
      for (const child of children.trim().split(/\s+/).filter(Boolean)) walk(Number(child));
    }
  };
  walk(root);
  return out;
}

/** What to measure: a named process (and, for `tree`, everything under it). */
export interface Watched {
  name: string;
  pid: () => number | undefined;
  /** Sum the process's live descendants too (PostgreSQL: the postmaster and its backends). */
  tree?: boolean;
  /** Only reaped children count (the bench itself, for the wrk processes it waited for). */
  reapedChildrenOnly?: boolean;
  /** Only the process's own time (the bench, when it is the load generator itself). */
  ownOnly?: boolean;
}

export type CpuSample = Map<string, number>;

/** CPU seconds of each watched process so far. */
export function sampleCpu(watched: readonly Watched[]): CpuSample {
  const sample: CpuSample = new Map();
  for (const w of watched) {
    const pid = w.pid();
    if (pid === undefined) continue;
    const pids = w.tree ? processTree(pid) : [pid];
    let total = 0;
    for (const p of pids) {
      const t = procTimes(p);
      if (!t) continue;
      total += w.reapedChildrenOnly ? t.children : w.ownOnly ? t.own : t.own + t.children;
    }
    sample.set(w.name, total);
  }
  return sample;
}

export function cpuDelta(before: CpuSample, after: CpuSample): Map<string, number> {
  const out = new Map<string, number>();
  for (const [name, t] of after) {
    const b = before.get(name);
    if (b !== undefined) out.set(name, Math.max(0, t - b));
  }
  return out;
}

/** The whole machine's busy and total CPU seconds (all cores), from /proc/stat. */
export interface MachineSample {
  busy: number;
  total: number;
}

export function sampleMachine(): MachineSample {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
  // cpu user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user).
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: (total - idle) / TICKS_PER_SECOND, total: total / TICKS_PER_SECOND };
}

/**
 * Resets a process's peak resident set (VmHWM), so the next read gives the peak of one scenario
 * ("5" in clear_refs, Linux ≥ 4.0; needs the right to write there: root, or the process's owner).
 */
export function resetPeakRss(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
  } catch {
    // Then the figure is the peak since the process started: still an upper bound.
  }
}

/** Peak resident memory in MB since start (or the last reset). */
export function peakRssMb(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? Number.NaN) / 1024;
  } catch {
    return Number.NaN;
  }
}

/**
 * A process found by what it runs: for servers whose launcher does not say their pid (Kafka's
 * JVM, Zipkin). `match` sees the command line (NUL-separated arguments joined by spaces) and the
 * working directory.
 */
export function findProcess(match: (cmdline: string, cwd: string) => boolean): number | undefined {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").join(" ");
      let cwd = "";
      try {
        cwd = readlinkSync(`/proc/${entry}/cwd`);
      } catch {}
      if (match(cmdline, cwd)) return Number(entry);
    } catch {}
  }
  return undefined;
}
