// Installs a Debian package on demand so tests can use real tools (promtool, chromium) without a
// manual setup step; several test files may ask at once, so installs are serialised with flock.
import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { delimiter, join } from "node:path";

const LOCK_FILE = "/tmp/merch-apt.lock";
const INSTALL_TIMEOUT_MS = 10 * 60_000;
// apt-get waits this long for dpkg's own lock, which processes outside our flock may hold.
const DPKG_LOCK_TIMEOUT_S = 300;
const SYSTEM_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

const pending = new Map<string, Promise<string>>();

export function ensureCommand(command: string, debianPackage: string): Promise<string> {
  const key = `${command}\0${debianPackage}`;
  let result = pending.get(key);
  if (!result) {
    result = locateOrInstall(command, debianPackage);
    result.catch(() => pending.delete(key));
    pending.set(key, result);
  }
  return result;
}

async function findCommand(command: string): Promise<string | undefined> {
  const dirs = [...(process.env.PATH ?? "").split(delimiter).filter(Boolean), ...SYSTEM_DIRS];
  for (const dir of new Set(dirs)) {
    const candidate = join(dir, command);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {}
  }
  return undefined;
}

async function locateOrInstall(command: string, debianPackage: string): Promise<string> {
  const found = await findCommand(command);
  if (found) return found;

  const installCommand = `apt-get update && apt-get install -y --no-install-recommends ${debianPackage}`;
  if (process.getuid?.() !== 0) {
    throw new Error(`'${command}' is not installed and only root can install it; run: sudo sh -c '${installCommand}'`);
  }
  const [aptGet, flock] = await Promise.all([findCommand("apt-get"), findCommand("flock")]);
  if (!aptGet || !flock) {
    throw new Error(`'${command}' is not installed and this is not a Debian system with apt-get and flock`);
  }

  // The check is repeated under the lock: whoever waited may find the package already installed.
  const script = [
    'if command -v "$1" >/dev/null 2>&1; then exit 0; fi',
    `set -e; apt-get -o DPkg::Lock::Timeout=${DPKG_LOCK_TIMEOUT_S} update -qq`,
    `DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=${DPKG_LOCK_TIMEOUT_S} install -y -qq --no-install-recommends "$2"`,
  ].join("\n");
  const waitSeconds = String(Math.floor(INSTALL_TIMEOUT_MS / 1000));
  await run(flock, ["-w", waitSeconds, LOCK_FILE, "sh", "-c", script, "sh", command, debianPackage], installCommand);

  const installed = await findCommand(command);
  if (!installed) throw new Error(`Debian package ${debianPackage} is installed but provides no '${command}' command`);
  return installed;
}

function run(file: string, args: string[], described: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, LC_ALL: "C" } });
    let output = "";
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString()).slice(-8192);
    };
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    // Killing apt-get or dpkg half-way can leave the package database needing repair, so on the
    // deadline the install is left to finish on its own and only this wait gives up.
    const timer = setTimeout(() => {
      child.stdout.destroy();
      child.stderr.destroy();
      child.unref();
      reject(new Error(`'${described}' did not finish within ${INSTALL_TIMEOUT_MS / 1000}s:\n${output}`));
    }, INSTALL_TIMEOUT_MS);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`'${described}' could not start: ${err.message}`));
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`'${described}' failed (${signal ?? `exit ${code}`}):\n${output.trim()}`));
    });
  });
}
