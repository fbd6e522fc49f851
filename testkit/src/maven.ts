// Jars from Maven Central, for the Java servers the tests run (Kafka's broker, Zipkin): `mvn
// dependency:copy-dependencies` of a pom.xml that exists only to name them, into a cache kept
// between runs (.cache/ by default).
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { promisify } from "node:util";

const MVN_TIMEOUT_MS = 10 * 60_000;
const fetches = new Map<string, Promise<string>>();

export interface JarSet {
  /** The pom.xml whose dependencies are fetched. */
  pom: string;
  /** Where this set lives in the cache, named after its version: <cache>/<name>-<version>. */
  dir: string;
  /** A jar the set must hold; its absence means the pom pins another version than the code. */
  expect: string;
  /** Said when `expect` is missing. */
  mismatch: string;
}

/** The directory holding the set's jars, fetched once per machine (and once per process at a time). */
export function mavenJars(set: JarSet): Promise<string> {
  let pending = fetches.get(set.dir);
  if (!pending) {
    pending = fetchJars(set);
    pending.catch(() => fetches.delete(set.dir));
    fetches.set(set.dir, pending);
  }
  return pending;
}

async function fetchJars({ pom, dir, expect, mismatch }: JarSet): Promise<string> {
  const libs = join(dir, "libs");
  const marker = join(dir, "complete");
  if (existsSync(marker)) return libs;

  // Maven writes into a private temp dir that is renamed into place only when complete, so a
  // concurrent process either sees nothing or a finished cache, never a half-copied one.
  await mkdir(dirname(dir), { recursive: true });
  const tmp = await mkdtemp(`${dir}.tmp-`);
  try {
    const args = ["-B", "-q", "-f", pom, "dependency:copy-dependencies", `-DoutputDirectory=${join(tmp, "libs")}`];
    await promisify(execFile)("mvn", args, { maxBuffer: 16 * 1024 * 1024, timeout: MVN_TIMEOUT_MS }).catch(
      (err: Error & { stdout?: string; stderr?: string }) => {
        throw new Error(
          `mvn ${args.join(" ")} failed:\n${`${err.stdout ?? ""}${err.stderr ?? ""}`.trim() || err.message}`,
        );
      },
    );
    if (!(await readdir(join(tmp, "libs"))).includes(expect)) throw new Error(mismatch);
    await writeFile(join(tmp, "complete"), `${new Date().toISOString()}\n`);
    try {
      await rename(tmp, dir);
    } catch (err) {
      // Another process won the race; its copy is just as good.
      if (!existsSync(marker)) throw err;
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return libs;
}
