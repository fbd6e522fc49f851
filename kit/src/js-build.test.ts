import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { buildServiceJs, JS_HOOKS } from "./js-build.ts";

const REPO_ROOT = join(import.meta.dirname, "..", "..");

/** Runs a module with node, with or without the hooks; what it printed, and whether Node loaded its type stripper. */
function run(script: string, hooks: string | undefined, cwd: string) {
  const probe =
    "process.on('exit', () => console.log(process.moduleLoadList.some((m) => m.includes('amaro')) ? 'stripper loaded' : 'no stripper'))";
  const r = spawnSync(
    process.execPath,
    [
      ...(hooks ? ["--import", hooks] : []),
      "--input-type=module",
      "-e",
      `${probe}; await import(${JSON.stringify(script)});`,
    ],
    { cwd, encoding: "utf8" },
  );
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim().split("\n");
}

test("a service's modules load from their build, without Node's type stripper", () => {
  buildServiceJs(REPO_ROOT);
  const gateway = join(REPO_ROOT, "gateway", "src", "index.ts");
  assert.deepEqual(run(gateway, JS_HOOKS, REPO_ROOT), ["no stripper"]);
  // Without the hooks the same import strips the sources' types.
  assert.deepEqual(run(gateway, undefined, REPO_ROOT), ["stripper loaded"]);
});

test("a build older than its source is not run: the source is", (t) => {
  // A repository of its own: the hooks find the packages two folders above themselves.
  const root = mkdtempSync(join(tmpdir(), "merch-js-build-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, "kit", "src"), { recursive: true });
  mkdirSync(join(root, "gen", "src"), { recursive: true });
  writeFileSync(join(root, "package.json"), '{ "type": "module" }\n');
  const hooks = join(root, "kit", "src", "js-hooks.mjs");
  copyFileSync(new URL(JS_HOOKS), hooks);
  const source = join(root, "gen", "src", "a.ts");
  writeFileSync(source, 'import { b } from "./b.ts";\nconst from: string = "source";\nconsole.log(from, b);\n');
  writeFileSync(join(root, "gen", "src", "b.ts"), 'export const b: string = "b from its source";\n');
  assert.equal(buildServiceJs(root), 2);
  assert.equal(buildServiceJs(root), 0, "nothing changed: nothing stripped again");
  const built = join(root, "gen", "build", "a.js");
  // The build is what runs, and it imports the build of its neighbour.
  writeFileSync(built, 'import { b } from "./b.ts";\nconsole.log("build", b.replace("source", "build"));\n');
  writeFileSync(join(root, "gen", "build", "b.js"), 'export const b = "b from its build";\n');
  assert.deepEqual(run(source, hooks, root), ["build b from its build", "no stripper"]);
  // An edit after the build: the edited source runs (its neighbour's build still does).
  const later = new Date(Date.now() + 60_000);
  utimesSync(source, later, later);
  assert.deepEqual(run(source, hooks, root), ["source b from its build", "stripper loaded"]);
  // The next build strips it again.
  assert.equal(buildServiceJs(root), 1);
});
