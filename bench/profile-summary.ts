// Summarises a V8 .cpuprofile (from node --cpu-prof): self time by function and by package, as a
// share of the time the process was not idle. With a window (CLOCK_MONOTONIC microseconds, as
// `npm run bench -- --profile <service>` prints for each scenario), only the samples taken in it
// count: the load, without start-up and warm-up.
//   node bench/profile-summary.ts file.cpuprofile [top=25] [fromUs toUs]
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { REPO_ROOT } from "@merch/testkit";

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount: number;
  children?: number[];
}
const profile = JSON.parse(readFileSync(process.argv[2] ?? "", "utf8")) as {
  nodes: Node[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
};
const top = Number(process.argv[3] ?? 25);
const from = Number(process.argv[4] ?? Number.NEGATIVE_INFINITY);
const to = Number(process.argv[5] ?? Number.POSITIVE_INFINITY);
// Frames of this checkout are shown relative to it, whichever worktree it is.
const ROOT_URL = `${pathToFileURL(REPO_ROOT).href}/`;
const shorten = (url: string) => url.replace(ROOT_URL, "").replace(/^.*node_modules\//, "nm:");
const selfUs = new Map<number, number>();
// V8 stamps samples with the monotonic clock that process.hrtime() reads in every process.
let at = profile.startTime;
profile.samples.forEach((id, i) => {
  const delta = profile.timeDeltas[i] ?? 0;
  at += delta;
  if (at >= from && at <= to) selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
});
const idleIds = new Set(profile.nodes.filter((n) => n.callFrame.functionName === "(idle)").map((n) => n.id));
const sampled = [...selfUs.values()].reduce((a, b) => a + b, 0);
const idle = [...selfUs].filter(([id]) => idleIds.has(id)).reduce((a, [, us]) => a + us, 0);
const total = sampled - idle;
console.log(
  `${(sampled / 1e6).toFixed(1)} s sampled, ${(idle / 1e6).toFixed(1)} s idle (${((100 * idle) / sampled).toFixed(0)} %); shares below are of the ${(total / 1e6).toFixed(1)} s busy`,
);
const byFn = new Map<string, number>();
const byPkg = new Map<string, number>();
for (const node of profile.nodes) {
  const us = selfUs.get(node.id) ?? 0;
  const { functionName, url, lineNumber } = node.callFrame;
  const short = shorten(url);
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
  console.log(`\n${title}`);
  for (const [k, v] of [...m]
    .filter(([k]) => !k.includes("(idle)"))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)) {
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
  if (us === 0 || idleIds.has(node.id)) continue;
  const seen = new Set<string>();
  for (let id: number | undefined = node.id; id !== undefined; id = parents.get(id)) {
    const n = byId.get(id);
    if (!n) break;
    const { functionName, url, lineNumber } = n.callFrame;
    const short = shorten(url);
    const key = `${functionName || "(anonymous)"} ${short}:${lineNumber + 1}`;
    if (seen.has(key)) continue;
    seen.add(key);
    inclusive.set(key, (inclusive.get(key) ?? 0) + us);
  }
}
show("inclusive, by function", inclusive);
