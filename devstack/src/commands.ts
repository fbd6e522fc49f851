// Finds the Debian tools the tests and benchmarks run (Chromium, Prometheus, wrk, h2load).
// Installing them is one step before any test starts, `npm run provision` (scripts/provision.sh),
// which `npm test` and `npm run bench` run first: a test only looks its tool up.
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { delimiter, join } from "node:path";

const SYSTEM_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/** The path of `command`, or an error that says which package provides it and how to install it. */
export async function requireCommand(command: string, debianPackage: string): Promise<string> {
  const dirs = [...(process.env.PATH ?? "").split(delimiter).filter(Boolean), ...SYSTEM_DIRS];
  for (const dir of new Set(dirs)) {
    const candidate = join(dir, command);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {}
  }
  throw new Error(`'${command}' is not installed (Debian package ${debianPackage}): run npm run provision`);
}
