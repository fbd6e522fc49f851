// The Dockerfile and .dockerignore against the repository: every COPY source exists and reaches
// the builder, each service image holds every file its entrypoints load (its CMD's, and the
// commands compose runs in it: db-init's in db-service's) and no tests, db-service's holds its
// migrations, the dependencies it loads are production ones, and its command, user, port and
// health check are right. test/deploy/image.test.ts runs what these images would run.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join, posix, relative } from "node:path";
import { describe, test } from "node:test";
import { loadConfig as loadDbConfig, MIGRATIONS_DIR } from "@merch/db-service";
import { loadConfig as loadGatewayConfig, SPEC_PATH, STOREFRONT_FILES } from "@merch/gateway";
import { loadConfig as loadLogConfig } from "@merch/log-service";
import { SERVICE_NODE_FLAGS } from "@merch/testkit";
import { parse as parseYaml } from "yaml";
import {
  argsOf,
  type ComposeFile,
  contextFiles,
  dockerfileStages,
  dockerignore,
  imageConfig,
  imageFiles,
  importGraph,
  lineOf,
  REPO_ROOT,
  read,
} from "./support.ts";

const stages = dockerfileStages();
const ignored = dockerignore(read(".dockerignore"));
const SERVICES = {
  "db-service": { load: loadDbConfig, health: "grpc", extra: [] as string[] },
  "log-service": { load: loadLogConfig, health: "grpc", extra: [] as string[] },
  // The gateway serves its OpenAPI document and the storefront page, read from disk at start-up.
  gateway: {
    load: loadGatewayConfig,
    health: "/healthz",
    extra: [SPEC_PATH, ...STOREFRONT_FILES].map((f) => relative(REPO_ROOT, f)),
  },
} as const;
type Service = keyof typeof SERVICES;
// What compose supplies (the required values), for reading an image's ENV with the real loadConfig.
const REQUIRED_ELSEWHERE = {
  DATABASE_URL: "postgres://merch:secret@postgres:5432/merch",
  JWT_SECRET: "x".repeat(48),
  SERVICE_CREDENTIAL: "c".repeat(32),
};
const services = Object.keys(SERVICES) as Service[];
// The commands compose runs in a service's image besides its CMD (db-init's in db-service's);
// compose.test.ts checks them against the code. Read as written: a command interpolates nothing.
const composeCommands = (target: string): string[][] =>
  Object.values((parseYaml(read("compose.yaml")) as ComposeFile).services)
    .filter((s) => s.build?.target === target && s.command !== undefined)
    .map((s) => s.command ?? []);

interface PackageJson {
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}
const pkg = (dir: string) => JSON.parse(read(join(dir, "package.json"))) as PackageJson;

describe("Dockerfile", () => {
  test("has a dependencies stage, a shared runtime and one target per service", () => {
    assert.deepEqual(
      stages.map((s) => s.name),
      ["deps", "runtime", "db-service", "log-service", "gateway"],
    );
    for (const name of services) assert.equal(stages.find((s) => s.name === name)?.from, "runtime");
  });

  test("builds on the official Node slim image of the version the repository pins", () => {
    const node = pkg(".").devDependencies?.node;
    assert.ok(node, "the root package.json pins node");
    for (const stage of stages.filter((s) => !stages.some((o) => o.name === s.from))) {
      assert.equal(stage.from, `node:${node}-slim`, stage.name);
    }
  });

  test("installs production dependencies only, exactly as package-lock.json pins them", () => {
    const runs = stages.flatMap((s) =>
      s.instructions.filter((i) => i.getKeyword() === "RUN").map((i) => [s.name, argsOf(i)]),
    );
    const installs = runs.filter(([, args]) => /\bnpm\b/.test(args ?? ""));
    assert.deepEqual(installs, [["deps", "npm ci --omit=dev --ignore-scripts --no-audit --no-fund"]]);
    // The deps stage sees every workspace's package.json, or npm ci would not install its dependencies.
    const depsFiles = [...imageFiles(imageConfig(stages, "deps"), ignored).values()].sort();
    const workspaces = (JSON.parse(read("package.json")) as { workspaces: string[] }).workspaces;
    assert.deepEqual(
      depsFiles,
      ["package-lock.json", "package.json", ...workspaces.map((w) => `${w}/package.json`)].sort(),
    );
  });

  test("every COPY source exists in the repository and is let through by .dockerignore", () => {
    for (const [index, stage] of stages.entries()) {
      const config = imageConfig(stages, stage.name);
      for (const ins of stage.instructions.filter((i) => ["COPY", "ADD"].includes(i.getKeyword()))) {
        const line = lineOf(ins);
        assert.equal(ins.getKeyword(), "COPY", `Dockerfile:${line}: use COPY, not ADD`);
        const copy = config.copies.find((c) => c.line === line);
        assert.ok(copy);
        if (copy.from !== undefined) {
          const from = stages.findIndex((s) => s.name === copy.from);
          assert.ok(from >= 0 && from < index, `Dockerfile:${line}: --from=${copy.from}`);
          continue;
        }
        for (const source of copy.sources) {
          assert.ok(existsSync(join(REPO_ROOT, source)), `Dockerfile:${line}: ${source} does not exist`);
          assert.ok(contextFiles(source, ignored).length > 0, `Dockerfile:${line}: .dockerignore keeps out ${source}`);
        }
      }
    }
  });

  test(".dockerignore keeps secrets, local state, the toolchain and tests out of the build context", () => {
    for (const path of [
      ".env",
      ".git/config",
      "node_modules/postgres/package.json",
      ".data/store.json",
      ".cache/kafka/complete",
      ".tmp/x",
      "test/e2e/start.test.ts",
      "scripts/start.ts",
      "db-service/src/orders.test.ts",
      "db-service/src/migrate.test.ts",
      "db-service/src/test-support/index.ts",
      "log-service/src/test-support/index.ts",
      "testkit/src/postgres.ts",
      "devstack/src/stack.ts",
      "db-init/init-before-migrations.sql",
      "README.md",
      // The storefront's sources: the image serves the committed bundle.
      "gateway/storefront/src/main.ts",
      "gateway/storefront/tsconfig.json",
    ]) {
      assert.equal(ignored(path), true, path);
    }
    for (const path of [
      "package.json",
      "db-service/src/server.ts",
      "db-init/migrations/0000_init.sql",
      "db-init/migrations/meta/_journal.json",
      "gateway/openapi.yaml",
      "gateway/storefront/index.html",
      "gateway/storefront/dist/shop.js",
      "kit/src/healthcheck.ts",
    ]) {
      assert.equal(ignored(path), false, path);
    }
  });
});

describe("each service image", () => {
  test("runs with the V8 heap limits the store is measured with", () => {
    for (const name of services) {
      assert.equal(imageConfig(stages, name).env.NODE_OPTIONS, SERVICE_NODE_FLAGS[name].join(" "), name);
    }
  });

  for (const name of services) {
    const config = imageConfig(stages, name);
    const files = imageFiles(config, ignored);
    const entry = `${name}/src/server.ts`;
    // Everything node is started on in this image: its CMD, compose's commands, the health check.
    const entries = [entry, ...composeCommands(name).map(([, script]) => script ?? ""), "kit/src/healthcheck.ts"];

    test(`${name}: runs ${entry} with node, as the unprivileged node user, in production`, () => {
      // Through the hooks that run what the image's build stripped (kit/src/js-build.ts).
      assert.deepEqual(config.cmd, ["node", "--import", "./kit/src/js-hooks.mjs", entry]);
      assert.equal(files.get("/app/kit/src/js-hooks.mjs"), "kit/src/js-hooks.mjs");
      assert.equal(config.workdir, "/app");
      assert.equal(files.get(`/app/${entry}`), entry);
      assert.equal(config.user, "node");
      assert.equal(config.env.NODE_ENV, "production");
      assert.equal(config.stopSignal, "SIGTERM");
      // The root package.json makes the scripts ES modules; the workspaces resolve through node_modules.
      assert.equal(files.get("/app/package.json"), "package.json");
      assert.ok(
        config.copies.some((c) => c.from === "deps" && c.sources.includes("/app/node_modules")),
        "node_modules from the deps stage",
      );
      // Compose runs other commands in this image only with node, on a file under /app.
      for (const [cmd, script] of composeCommands(name)) {
        assert.equal(cmd, "node");
        assert.equal(files.get(`/app/${script}`), script, `compose runs ${script}, which is not in the ${name} image`);
      }
    });

    test(`${name}: holds every file its entrypoints load, and no tests`, () => {
      const graph = importGraph(entries);
      for (const rel of [...graph.files, ...SERVICES[name].extra]) {
        assert.equal(files.get(`/app/${rel}`), rel, `${rel} is loaded by ${name} but not in its image`);
      }
      for (const [path] of files) {
        assert.doesNotMatch(path, /\.test\.ts$|test-support(\.ts$|\/)/, `${path} is in the ${name} image`);
        for (const other of services.filter((s) => s !== name)) {
          assert.ok(!path.startsWith(`/app/${other}/`), `${path}: ${other}'s code is in the ${name} image`);
        }
      }
    });

    test(`${name}: loads only packages that are production dependencies of the workspace using them`, () => {
      for (const [workspace, packages] of importGraph(entries).packages) {
        const deps = pkg(workspace === "scripts" ? "." : workspace).dependencies ?? {};
        for (const p of packages) assert.ok(p in deps, `${workspace} loads ${p} but does not list it in dependencies`);
      }
    });

    test(`${name}: exposes its port and checks its health there (${SERVICES[name].health})`, () => {
      const port = SERVICES[name].load({ ...REQUIRED_ELSEWHERE, ...config.env }).port;
      assert.equal(config.env.PORT, String(port));
      assert.deepEqual(config.expose, [String(port)]);
      // healthcheck.ts takes the port from $PORT, so the check follows a PORT set in compose.yaml.
      assert.deepEqual(config.healthcheck?.command, ["node", "/app/kit/src/healthcheck.ts", SERVICES[name].health]);
      assert.equal(files.get("/app/kit/src/healthcheck.ts"), "kit/src/healthcheck.ts");
      const options = config.healthcheck?.options ?? {};
      assert.deepEqual(Object.keys(options).sort(), ["interval", "retries", "start-period", "timeout"]);
      // The script gives up after 4 s; Docker's timeout must be longer.
      assert.ok(Number.parseInt(options.timeout ?? "0", 10) > 4, "HEALTHCHECK --timeout above healthcheck.ts's 4 s");
    });
  }

  test("db-service holds every migration db-init's journal lists, where migrate.ts looks for them", () => {
    const files = imageFiles(imageConfig(stages, "db-service"), ignored);
    // migrate.ts reads db-init/migrations beside its own workspace: /app/db-init/migrations in the image.
    const dir = posix.join("/app", relative(REPO_ROOT, MIGRATIONS_DIR));
    assert.equal(dir, "/app/db-init/migrations");
    const journal = JSON.parse(read("db-init/migrations/meta/_journal.json")) as { entries: { tag: string }[] };
    assert.ok(journal.entries.length > 0);
    for (const rel of ["meta/_journal.json", ...journal.entries.map((e) => `${e.tag}.sql`)]) {
      const path = posix.join(dir, rel);
      assert.equal(files.get(path), `db-init/migrations/${rel}`, `${path} is not in the db-service image`);
    }
  });

  test("log-service spools to the writable /data the runtime stage prepares", () => {
    const config = imageConfig(stages, "log-service");
    assert.equal(loadLogConfig({ ...REQUIRED_ELSEWHERE, ...config.env }).dataDir, "/data");
    const runtime = stages.find((s) => s.name === "runtime");
    assert.ok(
      runtime?.instructions.some(
        (i) => i.getKeyword() === "RUN" && argsOf(i) === "mkdir -p /data && chown node:node /data",
      ),
    );
  });
});
