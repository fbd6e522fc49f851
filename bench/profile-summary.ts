// Summarises a V8 .cpuprofile (from node --cpu-prof): self time by function and by package.
//   node bench/profile-summary.ts file.cpuprofile [top=25]
import { readFileSync } from "node:fs";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount: number;
  children?: number[];
}
const profile = JSON.parse(readFileSync(process.argv[2] ?? "", "utf8")) as {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
};
const top = Number(process.argv[3] ?? 25);
const selfUs = new Map<number, number>();
profile.samples.forEach((id, i) => {
  selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
});
const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
const byFn = new Map<string, number>();
const byPkg = new Map<string, number>();
for (const node of profile.nodes) {
  const us = selfUs.get(node.id) ?? 0;
  const { functionName, url, lineNumber } = node.callFrame;
  const short = url.replace(/^file:\/\/\/work\/main\//, "").replace(/^.*node_modules\//, "nm:");
  const fn = `${functionName || "(anonymous)"} ${short}:${lineNumber + 1}`;
  byFn.set(fn, (byFn.get(fn) ?? 0) + us);
  const pkg =
    url === ""
      ? `(${functionName || "native"})`
      : url.startsWith("node:")
        ? "node:internal"
        : (/node_modules\/((@[^/]+\/)?[^/]+)/.exec(url)?.[1] ?? short.split("/").slice(0, 2).join("/"));
  byPkg.set(pkg, (byPkg.get(pkg) ?? 0) + us);
}
const show = (title: string, m: Map<string, number>) => {
  console.log(`\n${title} (total ${(total / 1e6).toFixed(1)} s sampled)`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${((100 * v) / total).toFixed(1).padStart(5)} %  ${k}`);
  }
};
show("by package", byPkg);
show("by function", byFn);

// Inclusive time: a function's own samples plus everything it called.
const parents = new Map<number, number>();
for (const node of profile.nodes) for (const c of node.children ?? []) parents.set(c, node.id);
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const inclusive = new Map<string, number>();
for (const node of profile.nodes) {
  const us = selfUs.get(node.id) ?? 0;
  if (us === 0) continue;
  const seen = new Set<string>();
  for (let id: number | undefined = node.id; id !== undefined; id = parents.get(id)) {
    const n = byId.get(id);
    if (!n) break;
    const { functionName, url, lineNumber } = n.callFrame;
    const short = url.replace(/^file:\/\/\/work\/main\//, "").replace(/^.*node_modules\//, "nm:");
    const key = `${functionName || "(anonymous)"} ${short}:${lineNumber + 1}`;
    if (seen.has(key)) continue;
    seen.add(key);
    inclusive.set(key, (inclusive.get(key) ?? 0) + us);
  }
}
show("inclusive, by function", inclusive);
