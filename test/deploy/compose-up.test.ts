// `docker compose up` for real: the three images built from the Dockerfile, compose.yaml run as it
// is (Debian's docker-compose) with a generated .env and free host ports, then the store used
// through what compose publishes and from inside its network, restarted, taken down and up again
// with its volumes, and removed. Needs a Docker daemon: the running one, or one started here as
// root (and stopped again); without one the test says why and is skipped. Where no image registry
// answers (our build machines), node, postgres and apache/kafka are local stand-ins
// (deploy/test-images, test/deploy/stand-ins.ts), built once and kept.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { client } from "@merch/devstack";
import { type ChannelReader, followLogChannel, freePort, poll, REPO_ROOT } from "@merch/testkit";
import { DOCKER_ENV, docker, dockerEngine, run } from "./docker.ts";
import { ensureStandIns } from "./stand-ins.ts";
import { type ComposeFile, dockerfileStages, envFile, fillEnvExample } from "./support.ts";

process.env.KAFKAJS_NO_PARTITIONER_WARNING = "1";

const engine = await dockerEngine();
const skip = engine.available ? false : `no Docker daemon can run here: ${engine.reason}`;

const MINUTE = 60_000;
const PROJECT = `merch-up-${randomBytes(3).toString("hex")}`;
const SERVERS = ["postgres", "kafka", "db-service", "log-service", "gateway"] as const;
const JOBS = ["kafka-init", "db-init"] as const;
/** The services compose builds from the Dockerfile (db-init runs db-service's image). */
const BUILT = ["db-init", "db-service", "log-service", "gateway"] as const;
const log = (line: string) => process.stderr.write(`# ${line}\n`);

let dir: string;
let envPath: string;
let vars: Record<string, string> = {};
let compose: ComposeFile;
const ports: Record<string, number> = {};

/** docker-compose on compose.yaml, with the generated env file and nothing of this process's env. */
function dc(args: string[], timeoutMs = 5 * MINUTE): Promise<string> {
  return run(
    "docker-compose",
    ["--project-name", PROJECT, "--project-directory", REPO_ROOT, "-f", "compose.yaml", "--env-file", envPath, ...args],
    { cwd: REPO_ROOT, timeoutMs, env: { ...DOCKER_ENV, COMPOSE_DOCKER_CLI_BUILD: "0" } },
  );
}

interface ContainerState {
  service: string;
  status: string;
  health: string;
  exitCode: number;
  startedAt: string;
  finishedAt: string;
}

async function containers(): Promise<Map<string, ContainerState>> {
  const ids = (await dc(["ps", "-a", "-q"], MINUTE)).split("\n").filter(Boolean);
  if (ids.length === 0) return new Map();
  const format =
    '{{index .Config.Labels "com.docker.compose.service"}}|{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}|{{.State.ExitCode}}|{{.State.StartedAt}}|{{.State.FinishedAt}}';
  const lines = (await docker(["inspect", "--format", format, ...ids])).split("\n").filter(Boolean);
  return new Map(
    lines.map((line) => {
      const [service = "", status = "", health = "", exitCode = "", startedAt = "", finishedAt = ""] = line.split("|");
      return [service, { service, status, health, exitCode: Number(exitCode), startedAt, finishedAt }];
    }),
  );
}

/** Every server healthy and every job exited 0, within the deadline; a failed job fails at once. */
async function allHealthy(timeoutMs: number): Promise<Map<string, ContainerState>> {
  let last = "";
  return poll(
    "every compose service healthy",
    timeoutMs,
    async () => {
      const state = await containers();
      last = [...state.values()].map((c) => `${c.service}: ${c.status} ${c.health} ${c.exitCode}`).join("; ");
      for (const job of JOBS) {
        const c = state.get(job);
        if (c?.status === "exited" && c.exitCode !== 0) {
          throw new Error(`${job} exited with ${c.exitCode}:\n${await dc(["logs", "--tail", "40", job])}`);
        }
      }
      const ready =
        SERVERS.every((s) => state.get(s)?.health === "healthy") &&
        JOBS.every((j) => state.get(j)?.status === "exited" && state.get(j)?.exitCode === 0);
      return ready ? state : undefined;
    },
    { intervalMs: 2000 },
  ).catch(async (err: Error) => {
    throw new Error(`${err.message}\nlast seen: ${last}\n${await dc(["logs", "--tail", "30"]).catch(String)}`);
  });
}

/** Each server's slowest health-check probe so far, from Docker's own record of them. */
async function slowestProbes(): Promise<string> {
  const ids = (await dc(["ps", "-q", ...SERVERS], MINUTE)).split("\n").filter(Boolean);
  const format = '{{index .Config.Labels "com.docker.compose.service"}}|{{json .State.Health.Log}}';
  return (await docker(["inspect", "--format", format, ...ids]))
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [service, json = "[]"] = line.split("|");
      const probes = JSON.parse(json) as { Start: string; End: string }[];
      const ms = Math.max(...probes.map((p) => Date.parse(p.End) - Date.parse(p.Start)));
      return `${service} ${(ms / 1000).toFixed(1)} s`;
    })
    .join(", ");
}

const gatewayUrl = () => `http://127.0.0.1:${ports.GATEWAY_HOST_PORT}`;
const PASSWORD = "correct horse battery";
let token = "";
let orderId = 0;
let userId = 0;

describe("docker compose up: the real compose.yaml and Dockerfile", { skip, timeout: 90 * MINUTE }, () => {
  before(
    async () => {
      dir = mkdtempSync(join(tmpdir(), "merch-compose-up-"));
      envPath = join(dir, "env");
      const filled = await fillEnvExample((name) => randomBytes(name === "JWT_SECRET" ? 48 : 32).toString("hex"));
      vars = filled.vars;
      compose = filled.compose;
      for (const name of Object.keys(vars).filter((n) => n.endsWith("_HOST_PORT"))) {
        ports[name] = await freePort();
        vars[name] = String(ports[name]);
      }
      writeFileSync(envPath, envFile(vars));
    },
    { timeout: 5 * MINUTE },
  );

  after(
    async () => {
      // Whatever happened, nothing of this project stays: containers, networks, volumes.
      if (envPath) await dc(["down", "-v", "--remove-orphans", "--timeout", "10"], 5 * MINUTE).catch(log);
      // The project's image names go too; one fixed tag per image keeps its layers as the next
      // run's build cache (an untagged image would be removed with them). The image that tag
      // held before is removed, unless something else still uses it (then docker refuses).
      const idOf = (ref: string) =>
        docker(["image", "inspect", "--format", "{{.Id}}", ref]).then(
          (out) => out.trim(),
          () => "",
        );
      const replaced = new Set<string>();
      for (const service of BUILT) {
        const image = `${PROJECT}_${service}`;
        const cache = `merch-compose-test/${service}:cache`;
        const before = await idOf(cache);
        await docker(["tag", image, cache]).catch(() => {});
        await docker(["rmi", image]).catch(() => {});
        if (before && before !== (await idOf(cache))) replaced.add(before);
      }
      for (const id of replaced) await docker(["rmi", id]).catch(() => {});
      if (dir) rmSync(dir, { recursive: true, force: true });
      if (engine.available && engine.started) await engine.stop();
    },
    { timeout: 10 * MINUTE },
  );

  test("the upstream images are there (stand-ins built from Debian, npm and Maven Central where none can be pulled)", {
    timeout: 30 * MINUTE,
  }, async () => {
    const node = dockerfileStages().find((s) => s.name === "deps")?.from ?? "";
    const image = (name: string) => compose.services[name]?.image ?? "";
    const results = await ensureStandIns({ node, postgres: image("postgres"), kafka: image("kafka") }, log);
    for (const r of results) log(`stand-ins: ${r.tag} ${r.state}`);
    for (const r of results) await docker(["image", "inspect", r.tag]);
  });

  test("docker compose build makes the three service images from the Dockerfile", {
    timeout: 20 * MINUTE,
  }, async () => {
    const t0 = Date.now();
    await dc(["build"], 20 * MINUTE);
    log(`compose build: ${Math.round((Date.now() - t0) / 1000)} s`);
    for (const service of ["db-service", "log-service", "gateway"]) {
      const image = `${PROJECT}_${service}`;
      const [user, size] = (await docker(["image", "inspect", "--format", "{{.Config.User}}|{{.Size}}", image]))
        .trim()
        .split("|");
      log(`image ${service}: ${Math.round(Number(size) / 1e6)} MB, user ${user}`);
      assert.equal(user, "node", `${service} runs as the unprivileged user node`);
      // Code and dependencies are root's: the service's user cannot change what it runs, and
      // only production dependencies are installed (no toolchain, no test helpers).
      const probe = await docker([
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        image,
        "-c",
        "echo writable: $(find /app -writable | head -5); ls /app/node_modules /app/node_modules/@merch | tr '\\n' ' '",
      ]);
      assert.match(probe, /^writable:\n/, `${service}: nothing under /app is writable by node`);
      for (const dev of ["typescript", "@biomejs", "drizzle-kit", "node", "playwright-core"]) {
        assert.ok(!probe.split(/\s+/).includes(dev), `${service} holds the dev dependency ${dev}`);
      }
    }
  });

  test("up: db-init migrates once and exits 0 before db-service starts, and every health check passes", {
    timeout: 15 * MINUTE,
  }, async () => {
    const t0 = Date.now();
    await dc(["up", "-d", "--no-build"], 10 * MINUTE);
    const state = await allHealthy(8 * MINUTE);
    log(`up until healthy: ${Math.round((Date.now() - t0) / 1000)} s`);
    log(`health checks, slowest probe: ${await slowestProbes()}`);
    const init = state.get("db-init");
    const db = state.get("db-service");
    assert.ok(init && db);
    assert.ok(Date.parse(init.finishedAt) <= Date.parse(db.startedAt), "db-init finished before db-service started");
    assert.match(await dc(["logs", "--no-color", "db-init"]), /migrations applied/);
  });

  test("the README's first session over REST, and one ShopService call over Connect", {
    timeout: 5 * MINUTE,
  }, async () => {
    const api = client(gatewayUrl());
    const reg = await api<{ id: number }>("POST", "/users/register", {
      body: { sid: "12110001", username: "alice", email: "alice@mail.sustech.edu.cn", password: PASSWORD },
    });
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
    userId = reg.body.id;
    const login = await api<{ token: string }>("POST", "/users/login", {
      body: { username: "alice", password: PASSWORD },
    });
    assert.equal(login.status, 200);
    token = login.body.token;
    const order = await api<{ id: number; quantity: number }>("POST", "/orders", {
      token,
      body: { product_id: 1, quantity: 2 },
    });
    assert.equal(order.status, 201, JSON.stringify(order.body));
    orderId = order.body.id;

    const res = await fetch(`${gatewayUrl()}/merch.shop.v1.ShopService/ListOrders`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ pageSize: 5 }),
      signal: AbortSignal.timeout(30_000),
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { orders?: { id: string | number }[] };
    assert.deepEqual(
      body.orders?.map((o) => Number(o.id)),
      [orderId],
    );
  });

  test("buf curl reaches db-service inside the compose network with the service credential, and not without", {
    timeout: 5 * MINUTE,
  }, async () => {
    const buf = join(REPO_ROOT, "node_modules", "@bufbuild", `buf-linux-x64`, "bin", "buf");
    const call = (credential: boolean) =>
      docker(
        [
          "run",
          "--rm",
          "--network",
          `${PROJECT}_default`,
          "-v",
          `${buf}:/usr/local/bin/buf:ro`,
          "--entrypoint",
          "buf",
          `${PROJECT}_db-service`,
          "curl",
          "--http2-prior-knowledge",
          "--protocol",
          "grpc",
          ...(credential ? ["-H", `x-service-credential: ${vars.SERVICE_CREDENTIAL}`] : []),
          "-d",
          JSON.stringify({ username: "alice", password: PASSWORD }),
          "http://db-service:50051/merch.store.v1.UserService/AuthenticateUser",
        ],
        { timeoutMs: 2 * MINUTE },
      );
    const out = JSON.parse(await call(true)) as { user?: { id?: string | number; username?: string } };
    assert.equal(out.user?.username, "alice", JSON.stringify(out));
    await assert.rejects(call(false), /unauthenticated/);
  });

  test("the order's events are on Kafka's log-channel, read through the host listener", {
    timeout: 5 * MINUTE,
  }, async () => {
    let channel: ChannelReader | undefined;
    try {
      channel = await followLogChannel(`127.0.0.1:${ports.KAFKA_HOST_PORT}`);
      const placed = await channel.waitFor(
        (r) => r.record.event === "order.placed" && r.record.user_id === userId,
        "order.placed",
        2 * MINUTE,
      );
      assert.equal(placed.record.attributes.order_id, String(orderId));
      await channel.waitFor(
        (r) => r.record.event === "user.registered" && r.record.user_id === userId,
        "user.registered",
      );
    } finally {
      await channel?.stop();
    }
  });

  test("db-service restarted: it turns healthy again and the store answers", { timeout: 5 * MINUTE }, async () => {
    await dc(["restart", "db-service"], 2 * MINUTE);
    await allHealthy(3 * MINUTE);
    const api = client(gatewayUrl());
    const order = await poll("the order through a restarted db-service", MINUTE, async () => {
      const res = await api<{ id: number }>("GET", `/orders/${orderId}`, { token });
      return res.status === 200 ? res : undefined;
    });
    assert.equal(order.body.id, orderId);
  });

  test("down and up keep the data in the volumes; down -v removes them", { timeout: 15 * MINUTE }, async () => {
    // Only the named volumes compose.yaml declares: an anonymous one would outlive `down`.
    const ids = (await dc(["ps", "-a", "-q"], MINUTE)).split("\n").filter(Boolean);
    const format = '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{.Destination}}{{"\\n"}}{{end}}{{end}}';
    const mounts = (await docker(["inspect", "--format", format, ...ids])).split("\n").filter(Boolean);
    const declared = Object.keys(compose.volumes ?? {}).map((v) => `${PROJECT}_${v}`);
    for (const mount of mounts)
      assert.ok(declared.includes(mount.split(" ")[0] ?? ""), `an anonymous volume: ${mount}`);
    assert.deepEqual(new Set(mounts.map((m) => m.split(" ")[0])), new Set(declared));

    const t0 = Date.now();
    await dc(["down", "--timeout", "40"], 5 * MINUTE);
    log(`down: ${Math.round((Date.now() - t0) / 1000)} s`);
    assert.equal((await containers()).size, 0);
    await dc(["up", "-d", "--no-build"], 10 * MINUTE);
    await allHealthy(6 * MINUTE);
    // db-init ran again, on the kept volume, and had nothing to do.
    assert.match(await dc(["logs", "--no-color", "db-init"]), /the database is up to date/);
    const api = client(gatewayUrl());
    const login = await api<{ token: string }>("POST", "/users/login", {
      body: { username: "alice", password: PASSWORD },
    });
    assert.equal(login.status, 200, "alice's account outlived down/up");
    const order = await api<{ id: number }>("GET", `/orders/${orderId}`, { token: login.body.token });
    assert.equal(order.status, 200);

    await dc(["down", "-v", "--timeout", "40"], 5 * MINUTE);
    const volumes = (await docker(["volume", "ls", "-q", "--filter", `label=com.docker.compose.project=${PROJECT}`]))
      .split("\n")
      .filter(Boolean);
    assert.deepEqual(volumes, []);
  });
});
