// The services' JavaScript, stripped of its types ahead of time: `<package>/build/` mirrors
// `<package>/src/`, each `.ts` a `.js` with the same lines and columns (types become blanks).
// A service started with `--import ./kit/src/js-hooks.mjs` runs those files instead of its
// sources, so it never loads Node's type stripper (about 18 MB resident per process, kept for the
// life of the process: bench/results.md). testkit builds before it starts a service, the
// Dockerfile at image build time (`node kit/src/js-build.ts`).
//
// A file is stripped again only when its source is newer than its build; a build that is missing
// or older than its source is never run (js-hooks.mjs loads the source instead), so a stale build
// costs memory, never correctness.
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { stripTypeScriptTypes } from "node:module";
import { dirname, join, relative } from "node:path";
import { pathToFileURL } from "node:url";

/** The workspaces whose sources a service loads. */
export const SERVICE_PACKAGES = ["gen", "kit", "db-service", "log-service", "gateway"] as const;

const REPO_ROOT = join(import.meta.dirname, "..", "..");

/** What `node --import` takes to run the builds: `--import <JS_HOOKS> <package>/src/server.ts`. */
export const JS_HOOKS = pathToFileURL(join(import.meta.dirname, "js-hooks.mjs")).href;

function sources(dir: string, out: string[] = []): string[] {
  let entries: import("node:fs").Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out; // a package an image does not hold
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    // Tests and test harnesses never run inside a service.
    if (e.isDirectory()) {
      if (e.name !== "test-support") sources(path, out);
    } else if (e.name.endsWith(".ts") && !e.name.endsWith(".test.ts") && !e.name.endsWith(".d.ts")) {
      out.push(path);
    }
  }
  return out;
}

function mtimeMs(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return Number.NEGATIVE_INFINITY;
  }
}

/** Strips what changed since the last build; returns how many files it wrote. */
export function buildServiceJs(root = REPO_ROOT): number {
  let written = 0;
  // Node warns that stripTypeScriptTypes is experimental, once per process: the same stripper runs
  // every .ts file Node loads, and the build is checked by the tests that start the services.
  const warn = process.emitWarning;
  process.emitWarning = ((warning: string | Error, ...rest: never[]) => {
    if (!String(warning).includes("stripTypeScriptTypes")) warn.call(process, warning, ...rest);
  }) as typeof process.emitWarning;
  try {
    written = stripChanged(root);
  } finally {
    process.emitWarning = warn;
  }
  return written;
}

function stripChanged(root: string): number {
  let written = 0;
  for (const pkg of SERVICE_PACKAGES) {
    const src = join(root, pkg, "src");
    const build = join(root, pkg, "build");
    for (const file of sources(src)) {
      const target = join(build, `${relative(src, file).slice(0, -3)}.js`);
      if (mtimeMs(target) >= mtimeMs(file)) continue;
      const js = stripTypeScriptTypes(readFileSync(file, "utf8"), { mode: "strip" });
      mkdirSync(dirname(target), { recursive: true });
      // Written aside and renamed: services starting side by side never read half a file.
      const aside = `${target}.${process.pid}.tmp`;
      writeFileSync(aside, js);
      renameSync(aside, target);
      written++;
    }
  }
  return written;
}

if (import.meta.main) {
  const written = buildServiceJs(process.argv[2] ?? REPO_ROOT);
  console.log(`js-build: ${written} files stripped of their types`);
}
