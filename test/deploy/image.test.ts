// What the images run, without a Docker engine:
//  1. each image's HEALTHCHECK command, run against the real services, passes for its own
//     service and fails for a dead port or the wrong kind of service;
//  2. the images' file sets, put together in folders as the Dockerfile's COPY lines say, with
//     node_modules from the deps stage's own RUN line (production dependencies only), run the
//     store on an empty database: compose's db-init command migrates it from db-service's
//     files, then each service starts from its CMD with its image's ENV and compose's
//     environment (as docker-compose resolves it from .env.example filled in), turns healthy by
//     its HEALTHCHECK, serves the seeded products, and stops cleanly on its STOPSIGNAL.
import assert from "node:assert/strict";
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, posix } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { migrate } from "@merch/db-service";
import { type Stack, startStack } from "@merch/devstack";
import { freePort, REPO_ROOT, startTestPostgres, type TestPostgres } from "@merch/testkit";
import postgres from "postgres";
import {
  argsOf,
  type ComposeService,
  containerEnv,
  dockerfileStages,
  dockerignore,
  durationMs,
  fillEnvExample,
  type ImageConfig,
  imageConfig,
  imageFiles,
  read,
} from "./support.ts";

const execFileP = promisify(execFile);
const stages = dockerfileStages();
const ignored = dockerignore(read(".dockerignore"));
// compose.yaml as docker-compose resolves it from .env.example with the required secrets set
// (one SERVICE_CREDENTIAL for all three services, as in a real .env).
const { compose } = await fillEnvExample(() => randomBytes(32).toString("hex"));
function service(name: string): ComposeService {
  const s = compose.services[name];
  assert.ok(s, `compose.yaml has no service ${name}`);
  return s;
}
const SERVICES = ["db-service", "log-service", "gateway"] as const;
type Service = (typeof SERVICES)[number];
const JWT_SECRET = "image-test-secret-0123456789abcdef0123456789abcdef";

let pg: TestPostgres;
const dirs: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  dirs.push(dir);
  return dir;
}

/** Runs an image's HEALTHCHECK command with `/app` standing for `appDir`. */
async function healthcheck(
  config: ImageConfig,
  appDir: string,
  env: Record<string, string>,
): Promise<{ ok: boolean; output: string }> {
  const [cmd, ...args] = config.healthcheck?.command ?? [];
  assert.equal(cmd, "node");
  const mapped = args.map((a) =>
    a.startsWith(`${config.workdir}/`) ? join(appDir, posix.relative(config.workdir, a)) : a,
  );
  try {
    await execFileP(process.execPath, mapped, { cwd: appDir, env: { PATH: process.env.PATH ?? "", ...env } });
    return { ok: true, output: "" };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    return { ok: false, output: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

before(async () => {
  pg = await startTestPostgres({ migrate });
});

after(async () => {
  await pg?.destroy();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe("HEALTHCHECK commands against the real services", () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack({
      dataDir: tempDir("merch-hc-"),
      databaseUrl: pg.url,
      jwtSecret: JWT_SECRET,
      output: "capture",
    });
  });
  after(async () => {
    await stack?.stop();
  });
  const portOf = (name: Service) => new URL(stack.services[name].url).port;

  for (const name of SERVICES) {
    test(`${name}: healthy on its own port, unhealthy on a dead one or another service's`, async () => {
      const config = imageConfig(stages, name);
      const own = await healthcheck(config, REPO_ROOT, { PORT: portOf(name) });
      assert.ok(own.ok, own.output);

      const dead = await healthcheck(config, REPO_ROOT, { PORT: String(await freePort()) });
      assert.equal(dead.ok, false);
      assert.match(dead.output, /did not answer/);

      // The gateway does not speak gRPC health, and the internal services have no /healthz.
      const other = name === "gateway" ? "db-service" : "gateway";
      const wrong = await healthcheck(config, REPO_ROOT, { PORT: portOf(other) });
      assert.equal(wrong.ok, false, `${name}'s check passed against ${other}`);
    });
  }

  test("an operator runs the same check by URL: node kit/src/healthcheck.ts grpc http://127.0.0.1:PORT", async () => {
    for (const name of ["db-service", "log-service"] as const) {
      const { PORT: _, ...env } = process.env;
      await execFileP(process.execPath, ["kit/src/healthcheck.ts", "grpc", stack.services[name].url], {
        cwd: REPO_ROOT,
        env,
      });
    }
    const noPort = await execFileP(process.execPath, ["kit/src/healthcheck.ts", "grpc"], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? "" },
    }).then(
      () => ({ code: 0, stderr: "" }),
      (err: { code?: number; stderr?: string }) => err,
    );
    assert.equal(noPort.code, 1);
    assert.match(String(noPort.stderr), /PORT is not set and no BASE_URL was given/);
  });

  test("an HTTP check fails on a 503: /readyz while log-service is down, when /healthz still passes", async () => {
    await stack.services["log-service"].stop();
    try {
      // /readyz is 503 while log-service is down; the gateway's liveness (/healthz) is not.
      const gateway = imageConfig(stages, "gateway");
      const [cmd, script] = gateway.healthcheck?.command ?? [];
      assert.equal(cmd, "node");
      const readyz = await healthcheck(
        { ...gateway, healthcheck: { options: {}, command: ["node", script ?? "", "/readyz"] } },
        REPO_ROOT,
        { PORT: portOf("gateway") },
      );
      assert.equal(readyz.ok, false);
      assert.match(readyz.output, /answered 503/);
      assert.ok((await healthcheck(gateway, REPO_ROOT, { PORT: portOf("gateway") })).ok);
    } finally {
      stack.services["log-service"].start();
    }
  });
});

describe("the images' files with production dependencies only", () => {
  const root = tempDir("merch-image-");
  const app = (stage: string) => join(root, stage, "app");

  const made = new Map<string, ImageConfig>();
  /** Puts a stage's COPY lines into root/<stage>/app (the Dockerfile's WORKDIR is /app), once. */
  function materialize(stage: string): ImageConfig {
    const done = made.get(stage);
    if (done) return done;
    const config = imageConfig(stages, stage);
    made.set(stage, config);
    assert.equal(config.workdir, "/app");
    const dir = app(stage);
    mkdirSync(dir, { recursive: true });
    for (const [imagePath, rel] of imageFiles(config, ignored)) {
      const target = join(dir, posix.relative("/app", imagePath));
      mkdirSync(dirname(target), { recursive: true });
      cpSync(join(REPO_ROOT, rel), target);
    }
    for (const { from, sources, dest, workdir } of config.copies.filter((c) => c.from !== undefined)) {
      for (const source of sources) {
        const built = join(app(from ?? ""), posix.relative("/app", source));
        assert.ok(existsSync(built), `${source}: the ${from} stage did not make it (see that stage's test)`);
        const to = join(dir, posix.relative("/app", posix.resolve(workdir, dest)));
        cpSync(built, to, { recursive: true, verbatimSymlinks: true });
      }
    }
    // The node build steps of the stages after deps (stripping the sources' types), with this
    // machine's node: a service's CMD runs what they made. (The others set up users and folders.)
    if (stage !== "deps") {
      for (const s of chainOf(stage).filter((x) => x.name !== "deps")) {
        const builds = s.instructions.filter((i) => i.getKeyword() === "RUN" && argsOf(i).startsWith("node "));
        for (const run of builds) {
          execFileSync("sh", ["-c", argsOf(run)], {
            cwd: dir,
            env: { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ""}` },
          });
        }
      }
    }
    return config;
  }
  /** A stage and the stages it is built FROM, the first first. */
  function chainOf(stage: string): typeof stages {
    const chain: typeof stages = [];
    for (let s = stages.find((x) => x.name === stage); s; s = stages.find((x) => x.name === s?.from)) chain.unshift(s);
    return chain;
  }

  test("the deps stage's npm ci installs from package-lock.json", async () => {
    materialize("deps");
    const deps = stages.find((s) => s.name === "deps");
    for (const run of deps?.instructions.filter((i) => i.getKeyword() === "RUN") ?? []) {
      // The same command, run by this machine's npm; --prefer-offline only reuses its cache.
      await execFileP("sh", ["-c", argsOf(run)], {
        cwd: app("deps"),
        env: { ...process.env, npm_config_prefer_offline: "true" },
        maxBuffer: 16 * 1024 * 1024,
        timeout: 240_000,
      }).catch((err: { stderr?: string; message: string }) => {
        assert.fail(
          `Dockerfile deps stage: \`${argsOf(run)}\` failed, so would the image build:\n${err.stderr ?? err.message}`,
        );
      });
    }
  });

  test("run the store on an empty database: migrated by db-init, healthy, serving, stopped cleanly by STOPSIGNAL", async (t) => {
    // An empty database of its own, as a new pg-data volume has.
    const admin = postgres(pg.url, { max: 1, onnotice: () => {} });
    await admin.unsafe("CREATE DATABASE image_store");
    await admin.end();
    const databaseUrl = Object.assign(new URL(pg.url), { pathname: "/image_store" }).href;

    const ports = { "db-service": await freePort(), "log-service": await freePort(), gateway: await freePort() };
    // Compose's environment, with this machine standing in for the compose network's names.
    const local: Record<Service | "db-init", Record<string, string>> = {
      "db-init": { DATABASE_URL: databaseUrl },
      "db-service": { DATABASE_URL: databaseUrl },
      "log-service": { KAFKA_BROKERS: "", DATA_DIR: tempDir("merch-image-data-") },
      gateway: {
        DB_SERVICE_URL: `http://127.0.0.1:${ports["db-service"]}`,
        LOG_SERVICE_URL: `http://127.0.0.1:${ports["log-service"]}`,
      },
    };
    const environment = (name: Service | "db-init", config: ImageConfig): Record<string, string> => {
      const env: Record<string, string> = {
        PATH: process.env.PATH ?? "",
        HOME: tempDir("merch-home-"),
        ...containerEnv(config, service(name)),
      };
      assert.equal(env.NODE_ENV, "production", name);
      return { ...env, ...local[name] };
    };

    // db-init: compose's command, in db-service's files and image ENV. Twice: the second run
    // (a restarted deployment) finds nothing to do.
    const migrationImage = materialize(service("db-init").build?.target ?? "");
    const [node, ...migrateArgs] = service("db-init").command ?? [];
    assert.equal(node, "node");
    const journal = JSON.parse(read("db-init/migrations/meta/_journal.json")) as { entries: { tag: string }[] };
    for (const expected of [journal.entries.map((e) => e.tag), []]) {
      const { stdout } = await execFileP(process.execPath, migrateArgs, {
        cwd: app("db-service"),
        env: environment("db-init", migrationImage),
        timeout: 60_000,
      });
      const report = stdout
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { msg?: string; applied?: string[] })
        .find((r) => r.applied !== undefined);
      assert.deepEqual(report?.applied, expected, stdout);
    }

    const children = new Map<Service, { child: ChildProcess; output: () => string; exit: Promise<number | null> }>();
    t.after(() => {
      for (const { child } of children.values()) child.kill("SIGKILL");
    });

    for (const name of SERVICES) {
      const config = materialize(name);
      const env = { ...environment(name, config), PORT: String(ports[name]) };
      const [cmd, ...args] = config.cmd ?? [];
      assert.equal(cmd, "node");
      // It runs the JavaScript its image's build made, not its TypeScript (kit/src/js-hooks.mjs).
      assert.ok(args.includes("./kit/src/js-hooks.mjs"), `${name}'s CMD: ${config.cmd?.join(" ")}`);
      assert.ok(existsSync(join(app(name), name, "build", "server.js")), `${name}'s image has no build of its server`);
      const child = spawn(process.execPath, args, { cwd: app(name), env, stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      child.stdout.on("data", (d: Buffer) => {
        output += d.toString();
      });
      child.stderr.on("data", (d: Buffer) => {
        output += d.toString();
      });
      const exit = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
      children.set(name, { child, output: () => output, exit });

      const deadline = Date.now() + 30_000;
      for (;;) {
        const check = await healthcheck(config, app(name), env);
        if (check.ok) break;
        assert.equal(child.exitCode, null, `${name} exited:\n${output}`);
        assert.ok(Date.now() < deadline, `${name} not healthy in 30 s: ${check.output}\n${output}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    }

    const base = `http://127.0.0.1:${ports.gateway}`;
    const signal = AbortSignal.timeout(10_000);
    assert.equal((await fetch(`${base}/readyz`, { signal })).status, 200);
    const products = (await (await fetch(`${base}/products`, { signal })).json()) as { name: string; stock: number }[];
    assert.deepEqual(
      products.map((p) => [p.name, p.stock]),
      [
        ["SUSTech Hoodie", 500],
        ["SUSTech Water Bottle", 500],
        ["SUSTech Notebook", 500],
      ],
    );
    // The storefront's files are in the image too: the page and its committed bundle.
    for (const path of ["/shop/", "/shop/shop.js", "/shop/shop.css"]) {
      assert.equal((await fetch(`${base}${path}`)).status, 200, path);
    }

    for (const name of ["gateway", "log-service", "db-service"] as const) {
      const running = children.get(name);
      assert.ok(running);
      const stopSignal = imageConfig(stages, name).stopSignal as NodeJS.Signals;
      const grace = durationMs(service(name).stop_grace_period ?? "10s");
      running.child.kill(stopSignal);
      const code = await Promise.race([
        running.exit,
        new Promise<string>((resolve) => setTimeout(() => resolve("still running"), grace).unref()),
      ]);
      assert.equal(code, 0, `${name} after ${stopSignal}:\n${running.output()}`);
    }
  });
});
