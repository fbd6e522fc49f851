// `npm run check:graph`: the workspaces' import graph, built from every TypeScript source
// (tests included), must run one way: each package imports only packages of a lower layer,
// declares each one it imports, and never reaches into another workspace by a relative path; a
// service's production code never imports testkit (its tests may); no module imports itself back
// through others, type imports included. Each package exports a small
// public face, no "./*". The picture of the graph, docs/workspace-graph.md, must be what the
// sources give: `npm run check:graph -- --write` draws it again.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import { parseArgs } from "node:util";
import ts from "typescript";

const ROOT = join(import.meta.dirname, "..");
const PICTURE = "docs/workspace-graph.md";

/** The architecture, lowest layer first: a package may import only packages of lower layers. */
const LAYERS: readonly { name: string; nodes: readonly string[] }[] = [
  { name: "generated from the protos", nodes: ["gen"] },
  { name: "what the services share", nodes: ["kit"] },
  { name: "the real parts, for tests (never in an image)", nodes: ["testkit"] },
  { name: "the services, each with its tests and test harness", nodes: ["db-service", "log-service", "gateway"] },
  { name: "the whole store on one machine", nodes: ["devstack"] },
  { name: "the root package: end-to-end tests, benchmarks, scripts", nodes: ["test", "bench", "scripts"] },
];
const SERVICES = new Set(["db-service", "log-service", "gateway"]);
/** The root package's folders: one package.json (the root's), drawn as three nodes. */
const ROOT_GROUPS = new Set(["test", "bench", "scripts"]);

const { values } = parseArgs({ options: { write: { type: "boolean", default: false } } });

const rootPkg = readJson("package.json") as { workspaces: string[] };
const layerOf = new Map(LAYERS.flatMap(({ nodes }, rank) => nodes.map((n): [string, number] => [n, rank])));
const problems: string[] = [];

for (const ws of rootPkg.workspaces) {
  if (!layerOf.has(ws)) problems.push(`workspace ${ws} has no layer in scripts/check-graph.ts`);
  const pkg = readJson(`${ws}/package.json`) as { exports?: Record<string, string> };
  for (const key of Object.keys(pkg.exports ?? {})) {
    if (key.includes("*")) problems.push(`${ws}/package.json exports ${key}: name each entry point, not a pattern`);
  }
}

/** The node a file belongs to: its workspace, or its folder of the root package. */
function nodeOf(file: string): string | undefined {
  const top = file.split("/")[0] ?? "";
  if (rootPkg.workspaces.includes(top) || ROOT_GROUPS.has(top)) return top;
  return undefined;
}
const packageJsonOf = (node: string) => (ROOT_GROUPS.has(node) ? "package.json" : `${node}/package.json`);
const isTestFile = (file: string) =>
  /\.test\.ts$/.test(file) || file.startsWith("test/") || file.split("/").includes("test-support");

interface Edge {
  from: string;
  to: string;
  /** Whether only tests (and test harnesses) make it. */
  testOnly: boolean;
}
const edges = new Map<string, Edge>();
/** Each file's relative imports, for the module cycles within a workspace. */
const fileImports = new Map<string, string[]>();

const files = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard", "*.ts"], {
  cwd: ROOT,
  encoding: "utf8",
})
  .split("\n")
  .filter((f) => f !== "" && !f.startsWith("gen/src/") && !f.includes("node_modules/"));

for (const file of files) {
  const from = nodeOf(file);
  if (from === undefined) continue;
  const source = readFileSync(join(ROOT, file), "utf8");
  for (const { fileName: spec } of ts.preProcessFile(source, true, true).importedFiles) {
    let to: string | undefined;
    if (spec.startsWith(".")) {
      const target = normalize(join(dirname(file), spec));
      fileImports.set(file, [...(fileImports.get(file) ?? []), target]);
      to = nodeOf(target);
      const samePackage = to === from || (to !== undefined && ROOT_GROUPS.has(to) && ROOT_GROUPS.has(from));
      if (!samePackage) problems.push(`${file}: imports ${spec}, a relative path into ${to ?? "no workspace"}`);
      continue;
    }
    const name = /^@merch\/([^/]+)/.exec(spec)?.[1];
    if (name === undefined) continue;
    to = name;
    const rankFrom = layerOf.get(from) ?? -1;
    const rankTo = layerOf.get(to) ?? Number.POSITIVE_INFINITY;
    if (to === from) problems.push(`${file}: imports its own package as ${spec}; use a relative path`);
    else if (rankTo >= rankFrom) {
      const how = rankTo === rankFrom ? "beside it, in the same layer" : "above it";
      problems.push(`${file}: imports ${spec}, which is ${how} (${from} → ${to})`);
    }
    if (to !== from) {
      const pkg = readJson(packageJsonOf(from)) as Record<string, Record<string, string> | undefined>;
      if (!(`@merch/${to}` in { ...pkg.dependencies, ...pkg.devDependencies })) {
        problems.push(`${file}: imports @merch/${to}, which ${packageJsonOf(from)} does not declare`);
      }
    }
    if (to === "testkit" && SERVICES.has(from) && !isTestFile(file)) {
      problems.push(`${file}: production code imports testkit, which is never in an image (only tests may)`);
    }
    if (to === from) continue;
    const key = `${from} ${to}`;
    const edge = edges.get(key) ?? { from, to, testOnly: true };
    edge.testOnly &&= isTestFile(file);
    edges.set(key, edge);
  }
}

for (const cycle of cycles([...edges.values()])) problems.push(`cycle between workspaces: ${cycle.join(" → ")}`);
const moduleEdges = [...fileImports].flatMap(([from, tos]) => tos.map((to) => ({ from, to })));
for (const cycle of cycles(moduleEdges)) problems.push(`cycle between modules: ${cycle.join(" → ")}`);

const picture = draw([...edges.values()]);
if (values.write) {
  writeFileSync(join(ROOT, PICTURE), picture);
} else if (readText(PICTURE) !== picture) {
  problems.push(`${PICTURE} is not the graph the sources give: run npm run check:graph -- --write`);
}

if (problems.length > 0) {
  console.error(`check:graph: ${problems.length} problem(s)\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
console.log(`check:graph: ${files.length} files, ${edges.size} arrows between workspaces, all pointing down`);

/** Each elementary cycle found by a depth-first walk, as the nodes it passes. */
function cycles(all: readonly { from: string; to: string }[]): string[][] {
  const out: string[][] = [];
  const byFrom = new Map<string, string[]>();
  for (const e of all) byFrom.set(e.from, [...(byFrom.get(e.from) ?? []), e.to]);
  const next = (n: string) => byFrom.get(n) ?? [];
  const walk = (node: string, path: string[]) => {
    for (const to of next(node)) {
      const at = path.indexOf(to);
      if (at === 0) out.push([...path, to]);
      else if (at < 0 && to > (path[0] ?? "")) walk(to, [...path, to]);
    }
  };
  for (const start of new Set(all.map((e) => e.from))) walk(start, [start]);
  return out;
}

function draw(all: Edge[]): string {
  const id = (n: string) => n.replace(/-/g, "_");
  const layers = [...LAYERS]
    .reverse()
    .map(
      ({ name, nodes }, i) =>
        `  subgraph layer${LAYERS.length - i}["${name}"]\n${nodes.map((n) => `    ${id(n)}[${n}]`).join("\n")}\n  end`,
    );
  const arrows = [...all]
    .sort((a, b) => `${a.from} ${a.to}`.localeCompare(`${b.from} ${b.to}`))
    .map((e) => `  ${id(e.from)} ${e.testOnly ? "-. tests .->" : "-->"} ${id(e.to)}`);
  return `# The workspaces' import graph

Generated by \`npm run check:graph -- --write\` (scripts/check-graph.ts) from every TypeScript
source, tests included; \`npm test\` fails when it is stale. An arrow means "imports"; a dotted one
is made only by tests and test harnesses. Layers run from the top (what runs the store and its
tests) down to the generated code; every arrow points down, none sideways, so there is no cycle.

\`\`\`mermaid
flowchart TB
${layers.join("\n")}
${arrows.join("\n")}
\`\`\`
`;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(join(ROOT, path), "utf8");
  } catch {
    return undefined;
  }
}

function readJson(path: string): unknown {
  return JSON.parse(readFileSync(join(ROOT, path), "utf8"));
}
