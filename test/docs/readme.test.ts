import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import { loadConfig as loadDbConfig } from "@merch/db-service";
import { loadConfig as loadGatewayConfig } from "@merch/gateway";
import { TRACING_ENV } from "@merch/kit";
import { loadConfig as loadLogConfig } from "@merch/log-service";
import { freePort } from "@merch/testkit";
import { configReads, REPO_ROOT, read } from "../deploy/support.ts";

// The configuration tables of README.md and log-service/README.md against what each service
// really reads at start-up: its loadConfig (recorded through a proxy environment), LOG_LEVEL
// (kit's logger) and the OTEL_* variables (kit's tracing). A variable added to a service and not
// documented, or documented and no longer read, fails here.

const SERVICES = {
  gateway: loadGatewayConfig,
  "db-service": loadDbConfig,
  "log-service": loadLogConfig,
} as const;
type Service = keyof typeof SERVICES;
const names = Object.keys(SERVICES) as Service[];

function reads(service: Service): Set<string> {
  return new Set([...configReads(SERVICES[service]), "LOG_LEVEL", ...TRACING_ENV]);
}

/** The markdown section starting at `heading`, up to the next heading of the same level. */
function section(text: string, heading: string): string {
  const start = text.indexOf(`${heading}\n`);
  assert.ok(start >= 0, `no section ${heading}`);
  const level = heading.split(" ")[0] ?? "##";
  const rest = text.slice(start + heading.length + 1);
  const end = rest.search(new RegExp(`^${level} `, "m"));
  return end < 0 ? rest : rest.slice(0, end);
}

/** Table rows as cells, header and separator rows left out. */
function rows(markdown: string): string[][] {
  return markdown
    .split("\n")
    .filter((line) => line.startsWith("| `"))
    .map((line) =>
      line
        .slice(1, -1)
        .split(" | ")
        .map((cell) => cell.trim()),
    );
}

/** The variable names of a cell: `A`, `B`; `OTEL_*` stands for every tracing variable. */
function variables(cell: string): string[] {
  return [...cell.matchAll(/`([A-Z][A-Z0-9_]*\*?)`/g)].flatMap((m) =>
    m[1] === "OTEL_*" ? [...TRACING_ENV] : [m[1] ?? ""],
  );
}

test("README's Configuration tables name exactly the variables each service reads", () => {
  const documented = new Map<Service, Set<string>>(names.map((n) => [n, new Set()]));
  for (const [vars = "", services = ""] of rows(section(read("README.md"), "## Configuration"))) {
    const which = services === "all" ? names : (services.split(/,\s*/) as Service[]);
    for (const service of which) {
      assert.ok(names.includes(service), `unknown service "${service}" in the row for ${vars}`);
      for (const name of variables(vars)) documented.get(service)?.add(name);
    }
  }
  for (const service of names) {
    const doc = [...(documented.get(service) ?? [])].sort();
    assert.deepEqual(doc, [...reads(service)].sort(), `${service}: the README's table against its loadConfig`);
  }
});

test("log-service/README.md's Environment table names exactly the variables log-service reads", () => {
  const doc = new Set(
    rows(section(read("log-service/README.md"), "## Environment")).flatMap(([vars = ""]) => variables(vars)),
  );
  // NODE_ENV only decides whether SERVICE_CREDENTIAL is required, which its row says.
  doc.add("NODE_ENV");
  assert.deepEqual([...doc].sort(), [...reads("log-service")].sort());
});

// README commands as a newcomer runs them (issue 22.2): the machine's own node (here Node 20,
// which cannot run .ts), with nothing of node_modules/.bin on PATH; npm and npx bring Node 24.
const READMES = ["README.md", "log-service/README.md"];
const machinePath = (process.env.PATH ?? "")
  .split(delimiter)
  .filter((dir) => !dir.includes("node_modules"))
  .join(delimiter);
const sh = promisify(execFile);
const asNewcomer = (command: string) =>
  sh("sh", ["-c", command], { cwd: REPO_ROOT, env: { ...process.env, PATH: machinePath }, timeout: 60_000 }).then(
    (r) => ({ code: 0, ...r }),
    (err: { code?: number; stdout?: string; stderr?: string }) => ({
      code: err.code ?? -1,
      stdout: err.stdout ?? "",
      stderr: err.stderr ?? "",
    }),
  );

test("no README runs a .ts file with a bare node: npm run, npx node or node_modules/.bin/node", () => {
  for (const file of READMES) {
    for (const m of read(file).matchAll(/(\S*?)\bnode\s+(?:--\S+\s+)*[\w./-]+\.ts\b/g)) {
      const before = read(file).slice(Math.max(0, (m.index ?? 0) - 14), m.index ?? 0);
      const ok = /(npx |npm exec -- )$/.test(before) || (m[1] ?? "").endsWith("node_modules/.bin/");
      assert.ok(ok, `${file}: "${m[0]}" needs Node 24: write npx node, or an npm script`);
    }
  }
  assert.match(read("README.md"), /Every command here that runs a `\.ts` file goes through npm/);
});

test("README's .ts commands run as written on the machine's node", async (t) => {
  t.diagnostic(`the machine's node: ${(await asNewcomer("node --version")).stdout.trim()}`);
  // The health check line, pointed at a port nothing listens on: the script itself must run and
  // say why the check fails (not Node refusing the .ts file).
  const line = read("README.md").match(/`(npx node kit\/src\/healthcheck\.ts grpc http:\/\/127\.0\.0\.1:)50051`/);
  assert.ok(line?.[1], "README's health check command");
  const check = await asNewcomer(`${line[1]}${await freePort()}`);
  assert.equal(check.code, 1, check.stderr);
  assert.match(check.stderr, /^healthcheck: /m);
  assert.doesNotMatch(check.stderr, /ERR_UNKNOWN_FILE_EXTENSION/);
  // npx node is the repository's Node 24.
  assert.match((await asNewcomer("npx node --version")).stdout, /^v24\./);
  // log-service/README.md's npm forms.
  const logs = await asNewcomer("npm run logs -- --help");
  assert.equal(logs.code, 0, logs.stderr);
  assert.match(logs.stderr, /usage: npm run logs/);
});

/** [major, minor, patch] of "24.21.0", "v20.1" or "10.x" (a missing or wildcard part is 0). */
const version = (v: string): number[] =>
  v
    .replace(/^v/, "")
    .split(".")
    .map((p) => (/^[0-9]+$/.test(p) ? Number(p) : 0))
    .concat(0, 0)
    .slice(0, 3);
const compare = (a: number[], b: number[]): number => {
  for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) - (b[i] ?? 0);
  return 0;
};

/** Whether Node `v` satisfies an engines range of the forms npm packages use (>=, <, ^, x, x.*, ||). */
function satisfies(v: string, range: string): boolean {
  const have = version(v);
  return range.split("||").some((alternative) =>
    alternative
      .trim()
      .replace(/([<>=^~]+)\s+/g, "$1")
      .split(/\s+/)
      .every((comparator) => {
        const [, op = "", want = ""] = comparator.match(/^([<>=^~]*)(.*)$/) ?? [];
        if (want === "*" || want === "") return true;
        const min = version(want);
        const parts = want.split(".").filter((p) => /^[0-9]+$/.test(p)).length;
        const c = compare(have, min);
        if (op === ">=") return c >= 0;
        if (op === ">") return c > 0;
        if (op === "<") return c < 0;
        if (op === "<=") return c <= 0;
        if (op === "^") return have[0] === min[0] && c >= 0;
        assert.equal(op, "", `engines range "${range}": a form this test does not read`);
        return have.slice(0, parts).every((n, i) => n === min[i]);
      }),
  );
}

test("README's count of EBADENGINE warnings on Node 20 is package-lock's, and Node 24 satisfies them all", () => {
  const lock = JSON.parse(read("package-lock.json")) as { packages: Record<string, { engines?: { node?: string } }> };
  const pinned = (JSON.parse(read("package.json")) as { devDependencies: { node: string } }).devDependencies.node;
  assert.ok(satisfies("20.19.0", "^16 || ^18 || >=20") && !satisfies("20.19.0", ">=22") && satisfies("20.1.0", "20"));
  const wantMore: string[] = [];
  for (const [path, pkg] of Object.entries(lock.packages)) {
    const range = pkg.engines?.node;
    if (path === "" || range === undefined) continue;
    assert.ok(satisfies(pinned, range), `${path} wants Node ${range}: more than the pinned ${pinned}`);
    // npm warns on any Node 20 it does not satisfy; the machine's is 20.20.
    if (!satisfies("20.20.2", range)) wantMore.push(path.replace(/.*node_modules\//, ""));
  }
  const said = read("README.md").match(/`npm warn EBADENGINE` for ([0-9]+) packages/);
  assert.ok(said, "README says how many EBADENGINE warnings Node 20 prints");
  assert.equal(Number(said[1]), wantMore.length, `the packages that want more than Node 20: ${wantMore.join(", ")}`);
});

test("README's sizes of the storefront's script are what the gateway sends (within 2 KiB)", () => {
  const said = read("README.md").match(
    /`gateway\/storefront\/dist\/shop\.js` \(([0-9]+) KiB; ([0-9]+) KiB as sent with Brotli, ([0-9]+) KiB with gzip\)/,
  );
  assert.ok(said, "README quotes shop.js's sizes");
  // Compressed as gateway/src/plugins/static-asset.ts does it at start-up.
  const script = readFileSync(join(REPO_ROOT, "gateway", "storefront", "dist", "shop.js"));
  const sizes = {
    identity: script.length,
    br: brotliCompressSync(script, { params: { [constants.BROTLI_PARAM_QUALITY]: 9 } }).length,
    gzip: gzipSync(script, { level: 9 }).length,
  };
  const kib = (encoding: keyof typeof sizes) => sizes[encoding] / 1024;
  for (const [i, encoding] of (["identity", "br", "gzip"] as const).entries()) {
    const quoted = Number(said[i + 1]);
    assert.ok(
      Math.abs(quoted - kib(encoding)) <= 2,
      `${encoding}: README says ${quoted} KiB, it is ${kib(encoding).toFixed(1)} KiB`,
    );
  }
});
