// Readers for the deployment files (Dockerfile, .dockerignore, compose.yaml, .env.example) and
// for what the code itself needs (the variables a service reads, the files it imports), so the
// deploy tests can hold the two against each other.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, posix, relative } from "node:path";
import { REPO_ROOT } from "@merch/devstack/paths";
import { ConfigError } from "@merch/kit/config";
import { parse as parseYaml } from "yaml";

export { REPO_ROOT };
export const read = (rel: string): string => readFileSync(join(REPO_ROOT, rel), "utf8");

// ---------------------------------------------------------------------------------- Dockerfile

export interface Instruction {
  keyword: string;
  /** Everything after the keyword, continuation lines joined. */
  args: string;
  line: number;
}

export interface Stage {
  name: string;
  /** The FROM image or stage, with build args substituted. */
  from: string;
  instructions: Instruction[];
}

export interface Dockerfile {
  /** ARGs declared before the first FROM, with their defaults. */
  globalArgs: Record<string, string>;
  stages: Stage[];
}

export function parseDockerfile(text: string): Dockerfile {
  const instructions: Instruction[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let line = lines[i] ?? "";
    if (/^\s*(#|$)/.test(line)) continue;
    // A trailing backslash continues the instruction; comment lines inside it are dropped.
    while (/\\\s*$/.test(line) && i + 1 < lines.length) {
      line = line.replace(/\\\s*$/, " ");
      i++;
      const next = lines[i] ?? "";
      if (!/^\s*#/.test(next)) line += next;
    }
    const match = /^\s*(\S+)\s*(.*)$/.exec(line);
    if (match)
      instructions.push({ keyword: (match[1] ?? "").toUpperCase(), args: (match[2] ?? "").trim(), line: start + 1 });
  }
  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === "FROM") {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) throw new Error(`Dockerfile:${ins.line}: cannot read FROM ${ins.args}`);
      const from = (m[1] ?? "").replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a?: string, b?: string) => {
        const name = a ?? b ?? "";
        const value = globalArgs[name];
        if (value === undefined) throw new Error(`Dockerfile:${ins.line}: FROM uses undeclared ARG ${name}`);
        return value;
      });
      stages.push({ name: m[2] ?? String(stages.length), from, instructions: [] });
    } else if (stages.length === 0) {
      if (ins.keyword !== "ARG") throw new Error(`Dockerfile:${ins.line}: ${ins.keyword} before the first FROM`);
      const [name, value] = ins.args.split("=", 2);
      globalArgs[name ?? ""] = value ?? "";
    } else {
      stages.at(-1)?.instructions.push(ins);
    }
  }
  return { globalArgs, stages };
}

/** Splits exec form (a JSON array) or shell-ish words. */
export function words(args: string): string[] {
  if (args.startsWith("[")) return JSON.parse(args) as string[];
  return args.split(/\s+/).filter((w) => w !== "");
}

export interface Copy {
  from?: string | undefined;
  sources: string[];
  dest: string;
  line: number;
}

export function parseCopy(ins: Instruction): Copy {
  const all = words(ins.args);
  const flags = all.filter((w) => w.startsWith("--"));
  const rest = all.filter((w) => !w.startsWith("--"));
  const from = flags.find((f) => f.startsWith("--from="))?.slice("--from=".length);
  const dest = rest.pop();
  if (dest === undefined || rest.length === 0)
    throw new Error(`Dockerfile:${ins.line}: ${ins.keyword} needs a source and a destination`);
  return { from, sources: rest, dest, line: ins.line };
}

/** KEY=value pairs of an ENV instruction (the legacy `ENV KEY value` form too). */
export function parseEnv(args: string): Record<string, string> {
  if (!args.includes("=")) {
    const [key, ...value] = args.split(/\s+/);
    return { [key ?? ""]: value.join(" ") };
  }
  const out: Record<string, string> = {};
  for (const m of args.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
    const raw = m[2] ?? "";
    out[m[1] ?? ""] = raw.startsWith('"') ? (JSON.parse(raw) as string) : raw;
  }
  return out;
}

export interface Healthcheck {
  options: Record<string, string>;
  command: string[];
}

/** What a stage ends up with, its parents (FROM another stage) included. */
export interface ImageConfig {
  chain: Stage[];
  env: Record<string, string>;
  workdir: string;
  user: string | undefined;
  stopSignal: string | undefined;
  expose: string[];
  cmd: string[] | undefined;
  healthcheck: Healthcheck | undefined;
  /** Each COPY/ADD with the stage it is in and the WORKDIR it resolves against. */
  copies: { stage: Stage; workdir: string; copy: Copy }[];
}

export function imageConfig(file: Dockerfile, name: string): ImageConfig {
  const chain: Stage[] = [];
  let stage = file.stages.find((s) => s.name === name);
  while (stage) {
    chain.unshift(stage);
    const parent = stage.from;
    stage = file.stages.find((s) => s.name === parent);
  }
  if (chain.length === 0) throw new Error(`no stage ${name} in the Dockerfile`);
  const config: ImageConfig = {
    chain,
    env: {},
    workdir: "/",
    user: undefined,
    stopSignal: undefined,
    expose: [],
    cmd: undefined,
    healthcheck: undefined,
    copies: [],
  };
  for (const s of chain) {
    for (const ins of s.instructions) {
      switch (ins.keyword) {
        case "ENV":
          Object.assign(config.env, parseEnv(ins.args));
          break;
        case "WORKDIR":
          config.workdir = posix.resolve(config.workdir, ins.args);
          break;
        case "USER":
          config.user = ins.args;
          break;
        case "STOPSIGNAL":
          config.stopSignal = ins.args;
          break;
        case "EXPOSE":
          config.expose.push(...words(ins.args));
          break;
        case "CMD":
          config.cmd = words(ins.args);
          break;
        case "HEALTHCHECK": {
          const m = /^((?:--\S+\s+)*)CMD\s+(.*)$/.exec(ins.args);
          if (!m) throw new Error(`Dockerfile:${ins.line}: cannot read HEALTHCHECK ${ins.args}`);
          const options = Object.fromEntries(
            words(m[1] ?? "").map((o) => {
              const [k, v] = o.slice(2).split("=", 2);
              return [k ?? "", v ?? ""];
            }),
          );
          config.healthcheck = { options, command: words(m[2] ?? "") };
          break;
        }
        case "COPY":
        case "ADD":
          config.copies.push({ stage: s, workdir: config.workdir, copy: parseCopy(ins) });
          break;
      }
    }
  }
  return config;
}

// ------------------------------------------------------------------------------- .dockerignore

/** Docker's .dockerignore rules: the last matching pattern wins, and a pattern matches a path
 * when it matches the path itself or one of its parent folders. */
export function dockerignore(text: string): (rel: string) => boolean {
  const rules = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => {
      const negate = l.startsWith("!");
      const pattern = posix.normalize((negate ? l.slice(1) : l).trim()).replace(/^\/+/, "");
      return { negate, re: globToRegExp(pattern) };
    });
  return (rel) => {
    const parts = rel.split("/");
    const candidates = parts.map((_, i) => parts.slice(0, i + 1).join("/"));
    let excluded = false;
    for (const rule of rules) {
      if (candidates.some((c) => rule.re.test(c))) excluded = !rule.negate;
    }
    return excluded;
  };
}

function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] ?? "";
    if (c === "*" && glob[i + 1] === "*") {
      // "**/" is any number of folders (none too); a final "**" is anything.
      if (glob[i + 2] === "/") {
        re += "(?:.*/)?";
        i += 2;
      } else {
        re += ".*";
        i += 1;
      }
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

/** The repo files (relative, /-separated) a COPY source sends to the builder, after .dockerignore. */
export function contextFiles(source: string, ignored: (rel: string) => boolean): string[] {
  const abs = join(REPO_ROOT, source);
  if (!existsSync(abs)) return [];
  const out: string[] = [];
  const walk = (path: string) => {
    const rel = relative(REPO_ROOT, path).split("\\").join("/");
    if (statSync(path).isDirectory()) {
      for (const entry of readdirSync(path)) walk(join(path, entry));
    } else if (!ignored(rel)) {
      out.push(rel);
    }
  };
  walk(abs);
  return out;
}

/**
 * The files a stage's image holds from the build context: image path → repo path. Docker's
 * rules for the destination: a folder source copies its contents; a destination ending in "/"
 * (or with several sources) is a folder.
 */
export function imageFiles(config: ImageConfig, ignored: (rel: string) => boolean): Map<string, string> {
  const files = new Map<string, string>();
  for (const { workdir, copy } of config.copies) {
    if (copy.from !== undefined) continue;
    const destDir = copy.dest.endsWith("/") || copy.sources.length > 1;
    const dest = posix.resolve(workdir, copy.dest);
    for (const source of copy.sources) {
      const src = posix.normalize(source).replace(/\/+$/, "");
      const isDir = existsSync(join(REPO_ROOT, src)) && statSync(join(REPO_ROOT, src)).isDirectory();
      for (const rel of contextFiles(src, ignored)) {
        const target = isDir
          ? posix.join(dest, posix.relative(src, rel))
          : destDir
            ? posix.join(dest, posix.basename(rel))
            : dest;
        files.set(target, rel);
      }
    }
  }
  return files;
}

// ------------------------------------------------------------------------------ compose, .env

export interface ComposeService {
  image?: string;
  build?: { context: string; target?: string };
  restart?: string;
  depends_on?: Record<string, { condition: string }>;
  environment?: Record<string, string | number | boolean | null>;
  ports?: string[];
  volumes?: string[];
  command?: string[];
  healthcheck?: { test: string[]; interval?: string; timeout?: string; retries?: number; start_period?: string };
  stop_grace_period?: string;
}

export interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

export function loadCompose(): ComposeFile {
  return parseYaml(read("compose.yaml")) as ComposeFile;
}

/** KEY=value lines of an env file such as .env.example. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    if (/^\s*(#|$)/.test(line)) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) throw new Error(`not a KEY=value line: ${line}`);
    out[m[1] ?? ""] = m[2] ?? "";
  }
  return out;
}

export interface Reference {
  name: string;
  /** ":-", "-", ":?", "?" or "" */
  op: string;
  arg: string;
}

const REFERENCE = /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g;

/** Every ${VAR...} and $VAR in a string ($$ is a literal $). */
export function references(text: string): Reference[] {
  const out: Reference[] = [];
  for (const m of text.matchAll(REFERENCE)) {
    if (m[0] === "$$") continue;
    out.push({ name: m[1] ?? m[4] ?? "", op: m[2] ?? "", arg: m[3] ?? "" });
  }
  return out;
}

/** Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $$. */
export function interpolate(text: string, vars: Record<string, string>): string {
  return text.replace(REFERENCE, (whole, braced?: string, op?: string, arg?: string, bare?: string) => {
    if (whole === "$$") return "$";
    const name = braced ?? bare ?? "";
    const value = vars[name];
    const unsetOrEmpty = value === undefined || value === "";
    switch (op) {
      case ":-":
        return unsetOrEmpty ? (arg ?? "") : value;
      case "-":
        return value === undefined ? (arg ?? "") : value;
      case ":?":
        if (unsetOrEmpty) throw new Error(`${name}: ${arg}`);
        return value;
      case "?":
        if (value === undefined) throw new Error(`${name}: ${arg}`);
        return value;
      default:
        return value ?? "";
    }
  });
}

/** A service's environment as its container gets it: the image's ENV, then compose's. */
export function containerEnv(
  image: ImageConfig,
  service: ComposeService,
  vars: Record<string, string>,
): Record<string, string> {
  const env: Record<string, string> = { ...image.env };
  for (const [k, v] of Object.entries(service.environment ?? {})) env[k] = interpolate(String(v ?? ""), vars);
  return env;
}

export interface PortMapping {
  hostIp: string | undefined;
  published: number;
  target: number;
}

export function parsePort(spec: string): PortMapping {
  const parts = spec.split(":");
  const target = Number(parts.pop());
  const published = Number(parts.pop());
  return { hostIp: parts.pop(), published, target };
}

/** "35s", "1m30s", "500ms" → milliseconds. */
export function durationMs(text: string): number {
  let ms = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    ms += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as "ms" | "s" | "m" | "h"];
  }
  return ms;
}

// ---------------------------------------------------------------------------- what code reads

/** The variable names a loadConfig reads, recorded from a Proxy environment. */
export function configReads(load: (env: NodeJS.ProcessEnv) => unknown): Set<string> {
  const names = new Set<string>();
  const env = new Proxy<NodeJS.ProcessEnv>(
    {},
    {
      get(_target, key) {
        if (typeof key === "string") names.add(key);
        return undefined;
      },
    },
  );
  try {
    load(env);
  } catch (err) {
    // A missing required variable is expected here: every name is read before the check.
    if (!(err instanceof ConfigError)) throw err;
  }
  return names;
}

export interface ImportGraph {
  /** Repo files (relative) loaded, entries included. */
  files: Set<string>;
  /** Packages each workspace's files load at run time (type-only imports are erased). */
  packages: Map<string, Set<string>>;
}

/** Follows the static imports from the entries: relative ones and @merch/* workspaces. */
export function importGraph(entries: string[]): ImportGraph {
  const files = new Set<string>();
  const packages = new Map<string, Set<string>>();
  const pending = [...entries];
  while (pending.length > 0) {
    const rel = pending.pop() ?? "";
    if (files.has(rel)) continue;
    if (!existsSync(join(REPO_ROOT, rel))) throw new Error(`${rel} is imported but does not exist`);
    files.add(rel);
    const source = read(rel);
    const statements = /(?:^|[\s;])(import|export)\s+(type\s+)?(?:[^"';]*?\sfrom\s*)?["']([^"']+)["']/g;
    const dynamic = /import\(\s*["']([^"']+)["']\s*\)/g;
    const found: { spec: string; typeOnly: boolean }[] = [];
    for (const m of source.matchAll(statements)) found.push({ spec: m[3] ?? "", typeOnly: m[2] !== undefined });
    for (const m of source.matchAll(dynamic)) found.push({ spec: m[1] ?? "", typeOnly: false });
    for (const { spec, typeOnly } of found) {
      if (spec.startsWith(".")) {
        pending.push(posix.normalize(posix.join(posix.dirname(rel), spec)));
      } else if (spec.startsWith("@merch/")) {
        const [, pkg, ...sub] = spec.split("/");
        pending.push(`${pkg}/src/${sub.join("/")}.ts`);
      } else if (!spec.startsWith("node:") && !typeOnly) {
        const name = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : (spec.split("/")[0] ?? "");
        const workspace = rel.split("/")[0] ?? "";
        const set = packages.get(workspace) ?? new Set<string>();
        packages.set(workspace, set);
        set.add(name);
      }
    }
  }
  return { files, packages };
}

/** Variables read straight from process.env (not through readConfig) in the given files. */
export function directEnvReads(files: Iterable<string>): Map<string, string> {
  const out = new Map<string, string>();
  for (const rel of files) {
    for (const m of read(rel).matchAll(/process\.env(?:\.([A-Z_][A-Z0-9_]*)|\[\s*["']([A-Z_][A-Z0-9_]*)["']\s*\])/g)) {
      out.set(m[1] ?? m[2] ?? "", rel);
    }
  }
  return out;
}
