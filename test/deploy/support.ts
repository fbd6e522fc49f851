// Readers for the deployment files and for what the code needs, so the deploy tests can hold the
// two against each other. The Dockerfile is read by dockerfile-ast, .dockerignore matched by
// @balena/dockerignore (Docker's own rules), and compose.yaml resolved by Debian's docker-compose
// itself (`config`); what is left here is what those files mean for an image or a container.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, posix, relative } from "node:path";
import { parseEnv, promisify } from "node:util";
import dockerignorePackage from "@balena/dockerignore";
import { ConfigError } from "@merch/kit";
import { REPO_ROOT } from "@merch/testkit";
import { DockerfileParser, type Env, type Instruction, type JSONInstruction } from "dockerfile-ast";
import { parse as parseYaml } from "yaml";

export { REPO_ROOT };
export const read = (rel: string): string => readFileSync(join(REPO_ROOT, rel), "utf8");

// ---------------------------------------------------------------------------------- Dockerfile

export interface Stage {
  name: string;
  /** The FROM image or stage, build args substituted. */
  from: string;
  instructions: Instruction[];
}

/** The Dockerfile's build stages, in order. */
export function dockerfileStages(text = read("Dockerfile")): Stage[] {
  const stages: Stage[] = [];
  for (const ins of DockerfileParser.parse(text).getInstructions()) {
    if (ins.getKeyword() === "FROM") {
      const [image, as, name] = ins.getExpandedArguments().map((a) => a.getValue());
      assert(image !== undefined && (as === undefined || /^as$/i.test(as)), `cannot read ${ins.getTextContent()}`);
      stages.push({ name: name ?? String(stages.length), from: image, instructions: [] });
    } else {
      // ARGs before the first FROM are in the FROM lines' expanded arguments already.
      stages.at(-1)?.instructions.push(ins);
    }
  }
  return stages;
}

export const lineOf = (ins: Instruction): number => ins.getRange().start.line + 1;
export const argsOf = (ins: Instruction): string => ins.getArgumentsContent() ?? "";

const jsonForm = (ins: JSONInstruction): string[] => ins.getJSONStrings().map((s) => s.getJSONValue());
/** An exec-form (JSON) command as it is, a shell-form one as Docker runs it. */
const command = (json: string[], text: string): string[] => (json.length > 0 ? json : ["/bin/sh", "-c", text]);

export interface CopyLine {
  from: string | undefined;
  sources: string[];
  dest: string;
  line: number;
  /** The WORKDIR it resolves against. */
  workdir: string;
}

/** What a stage's image ends up with, its parent stages (FROM another stage) included. */
export interface ImageConfig {
  env: Record<string, string>;
  workdir: string;
  user: string | undefined;
  stopSignal: string | undefined;
  expose: string[];
  cmd: string[] | undefined;
  healthcheck: { options: Record<string, string>; command: string[] } | undefined;
  copies: CopyLine[];
}

export function imageConfig(stages: Stage[], name: string): ImageConfig {
  const chain: Stage[] = [];
  for (let s = stages.find((x) => x.name === name); s; s = stages.find((x) => x.name === s?.from)) chain.unshift(s);
  assert(chain.length > 0, `no stage ${name} in the Dockerfile`);
  const config: ImageConfig = {
    env: {},
    workdir: "/",
    user: undefined,
    stopSignal: undefined,
    expose: [],
    cmd: undefined,
    healthcheck: undefined,
    copies: [],
  };
  for (const stage of chain) {
    for (const ins of stage.instructions) {
      const args = argsOf(ins);
      const keyword = ins.getKeyword();
      if (keyword === "ENV") for (const p of (ins as Env).getProperties()) config.env[p.getName()] = p.getValue() ?? "";
      else if (keyword === "WORKDIR") config.workdir = posix.resolve(config.workdir, args);
      else if (keyword === "USER") config.user = args;
      else if (keyword === "STOPSIGNAL") config.stopSignal = args;
      else if (keyword === "EXPOSE") config.expose.push(...ins.getArguments().map((a) => a.getValue()));
      else if (keyword === "CMD") config.cmd = command(jsonForm(ins as JSONInstruction), args);
      else if (keyword === "HEALTHCHECK") {
        // dockerfile-ast reads the --options; the command after CMD is JSON (exec form) or shell.
        const flags = (ins as JSONInstruction).getFlags();
        const rest = args.replace(/^CMD\s+/i, "");
        config.healthcheck = {
          options: Object.fromEntries(flags.map((f) => [f.getName(), f.getValue() ?? ""])),
          command: command(rest.startsWith("[") ? (JSON.parse(rest) as string[]) : [], rest),
        };
      } else if (keyword === "COPY" || keyword === "ADD") {
        const copy = ins as JSONInstruction;
        const json = jsonForm(copy);
        const sources = json.length > 0 ? json : copy.getArguments().map((a) => a.getValue());
        const dest = sources.pop();
        assert(
          dest !== undefined && sources.length > 0,
          `Dockerfile:${lineOf(ins)}: ${keyword} needs a source and a destination`,
        );
        const from =
          copy
            .getFlags()
            .find((f) => f.getName() === "from")
            ?.getValue() ?? undefined;
        config.copies.push({ from, sources, dest, line: lineOf(ins), workdir: config.workdir });
      }
    }
  }
  return config;
}

// ------------------------------------------------------------------------------- .dockerignore

/** Whether the builder leaves a repo path (relative, /-separated) out of the build context. */
export function dockerignore(text: string): (rel: string) => boolean {
  const rules = dockerignorePackage.default().add(text);
  return (rel) => rules.ignores(rel);
}

/** The repo files a COPY source sends to the builder, after .dockerignore. */
export function contextFiles(source: string, ignored: (rel: string) => boolean): string[] {
  const out: string[] = [];
  const walk = (path: string) => {
    if (statSync(path).isDirectory()) for (const entry of readdirSync(path)) walk(join(path, entry));
    else if (!ignored(relative(REPO_ROOT, path))) out.push(relative(REPO_ROOT, path));
  };
  if (existsSync(join(REPO_ROOT, source))) walk(join(REPO_ROOT, source));
  return out;
}

/**
 * The files a stage's image holds from the build context: image path → repo path. Docker's
 * rules for the destination: a folder source copies its contents; a destination ending in "/"
 * (or with several sources) is a folder.
 */
export function imageFiles(config: ImageConfig, ignored: (rel: string) => boolean): Map<string, string> {
  const files = new Map<string, string>();
  for (const { from, sources, dest: rawDest, workdir } of config.copies) {
    if (from !== undefined) continue;
    const destDir = rawDest.endsWith("/") || sources.length > 1;
    const dest = posix.resolve(workdir, rawDest);
    for (const source of sources) {
      const src = posix.normalize(source).replace(/\/+$/, "");
      const isDir = existsSync(join(REPO_ROOT, src)) && statSync(join(REPO_ROOT, src)).isDirectory();
      for (const rel of contextFiles(src, ignored)) {
        const inDir = destDir ? posix.join(dest, posix.basename(rel)) : dest;
        files.set(isDir ? posix.join(dest, posix.relative(src, rel)) : inDir, rel);
      }
    }
  }
  return files;
}

// ------------------------------------------------------------------------------------- compose

export interface ComposeService {
  image?: string;
  build?: { context: string; target?: string };
  restart?: string;
  depends_on?: Record<string, { condition: string }>;
  environment?: Record<string, string | number | null>;
  /** docker-compose prints short ports as "ip:published:target/tcp", others in the long syntax. */
  ports?: (string | { host_ip?: string; published: number; target: number })[];
  volumes?: string[];
  command?: string[];
  healthcheck?: { test?: string[]; disable?: boolean; timeout?: string };
  stop_grace_period?: string;
  profiles?: string[];
}

export interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

/** Refused by docker-compose; the message is what it told the operator. */
export class ComposeRefused extends Error {}

const execFileP = promisify(execFile);

/** KEY=value lines, as an env file holds them. */
export const envFile = (vars: Record<string, string>): string =>
  Object.entries(vars)
    .map(([k, v]) => `${k}=${v}\n`)
    .join("");

/**
 * compose.yaml as Debian's docker-compose resolves it (`config`) from an env file with exactly
 * this text: nothing else reaches it (compose would take this process's environment over the
 * file's, and read a .env of its own beside compose.yaml when given no file).
 */
export async function composeConfig(envText: string): Promise<ComposeFile> {
  const dir = mkdtempSync(join(tmpdir(), "merch-compose-"));
  try {
    writeFileSync(join(dir, "env"), envText);
    // docker-compose is a Python program: its start-up alone can take seconds on a busy machine.
    const { stdout } = await execFileP(
      "bash",
      ["scripts/docker-compose.sh", "-f", "compose.yaml", "--env-file", join(dir, "env"), "config"],
      { cwd: REPO_ROOT, env: { PATH: process.env.PATH ?? "", HOME: dir }, timeout: 240_000, maxBuffer: 1 << 24 },
    ).catch((err: { stderr?: string; message: string; killed?: boolean }) => {
      if (err.killed) throw new Error(`docker-compose config did not finish in 240 s: ${err.message}`);
      throw new ComposeRefused(err.stderr?.trim() || err.message);
    });
    return parseYaml(stdout) as ComposeFile;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The names compose.yaml interpolates: ${NAME...} and $NAME, but not $$ (a literal $). */
export function composeVariables(text: string): Set<string> {
  return new Set([...text.matchAll(/\$\$|\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)].flatMap((m) => (m[1] ? [m[1]] : [])));
}

export interface FilledEnv {
  /** .env.example as an operator fills it in: each required value set to a fresh secret. */
  vars: Record<string, string>;
  /** The variables docker-compose refused to start without, in the order it named them. */
  required: string[];
  /** Each refusal docker-compose gave on the way. */
  refusals: string[];
  compose: ComposeFile;
}

/**
 * Starts from .env.example as it is and asks docker-compose, filling in each variable it says is
 * required (its `${VAR:?VAR is required...}` messages name them) until it accepts the file.
 */
export async function fillEnvExample(secret: (name: string) => string): Promise<FilledEnv> {
  const vars = parseEnv(read(".env.example")) as Record<string, string>;
  const required: string[] = [];
  const refusals: string[] = [];
  for (;;) {
    try {
      // The first try reads .env.example itself, as an operator's copy would be read.
      const compose = await composeConfig(required.length === 0 ? read(".env.example") : envFile(vars));
      return { vars, required, refusals, compose };
    } catch (err) {
      if (!(err instanceof ComposeRefused)) throw err;
      const name = /in service "[^"]+": ([A-Za-z_][A-Za-z0-9_]*) is required\b[^\n]*$/.exec(err.message)?.[1];
      assert(
        name !== undefined && !required.includes(name),
        `compose refused without naming a new variable: ${err.message}`,
      );
      required.push(name);
      refusals.push(err.message);
      vars[name] = secret(name);
    }
  }
}

export interface PortMapping {
  hostIp: string | undefined;
  published: number;
  target: number;
}

export function portsOf(service: ComposeService): PortMapping[] {
  return (service.ports ?? []).map((p) => {
    if (typeof p !== "string") return { hostIp: p.host_ip, published: Number(p.published), target: Number(p.target) };
    const [spec = "", protocol] = p.split("/");
    assert(protocol === undefined || protocol === "tcp", `${p}: only TCP`);
    const [target, published, hostIp] = spec.split(":").reverse();
    return { hostIp, published: Number(published), target: Number(target) };
  });
}

/** A service's environment as its container gets it: the image's ENV, then compose's. */
export function containerEnv(image: ImageConfig, service: ComposeService): Record<string, string> {
  const env: Record<string, string> = { ...image.env };
  for (const [k, v] of Object.entries(service.environment ?? {})) env[k] = String(v ?? "");
  return env;
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
    assert(existsSync(join(REPO_ROOT, rel)), `${rel} is imported but does not exist`);
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
        // Through the workspace's exports, as Node resolves it.
        const [, pkg, ...sub] = spec.split("/");
        const { exports } = JSON.parse(read(`${pkg}/package.json`)) as { exports: Record<string, string> };
        const target = exports[sub.length === 0 ? "." : `./${sub.join("/")}`];
        assert(target !== undefined, `${rel} imports ${spec}, which ${pkg}/package.json does not export`);
        pending.push(posix.join(pkg ?? "", target));
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
