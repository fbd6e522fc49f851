// The store under test: Kafka, one PostgreSQL (durable: fsync and synchronous commit on, as in
// production), the three services, and a bare Fastify route as the ceiling of any route. The
// services can be restarted with other settings (tracing on) on the same database and broker.
import { spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { migrate } from "@merch/db-service";
import { putProduct } from "@merch/db-service/test-support";
import { type Stack, startStack } from "@merch/devstack";
import type { ServiceName } from "@merch/testkit";
import { REPO_ROOT, startKafka, startPostgres } from "@merch/testkit";
import postgres from "postgres";
import { findProcess, type Watched } from "./cpu.ts";

export const JWT_SECRET = "bench-secret-0123456789abcdef0123456789abcdef";
const SERVICES: ServiceName[] = ["gateway", "db-service", "log-service"];

export interface Shopper {
  username: string;
  token: string;
  userId: number;
  sessionId: string;
}

export interface Store {
  stack: Stack;
  bareUrl: string;
  databaseUrl: string;
  sql: postgres.Sql;
  /** The processes whose CPU each scenario reports (the load generator is added by the caller). */
  watched: Watched[];
  /** Starts the three services again with extra environment (the same database and broker). */
  restartServices(
    env: Record<string, string>,
    serviceEnv?: Partial<Record<ServiceName, Record<string, string>>>,
  ): Promise<void>;
  stop(): Promise<void>;
}

export interface StoreOptions {
  /** Extra environment for one service, on every start. */
  serviceEnv?: Partial<Record<ServiceName, Record<string, string>>>;
  /** Extra processes to watch (Zipkin). */
  extraWatched?: Watched[];
}

export async function startStore(opts: StoreOptions = {}): Promise<Store> {
  const dataDir = mkdtempSync(join(tmpdir(), "merch-bench-"));
  chmodSync(dataDir, 0o755);
  const kafka = await startKafka();
  const pg = await startPostgres({ dataDir: join(dataDir, "pg"), fast: false, migrate });
  const sql = postgres(pg.url, { max: 2, onnotice: () => {} });
  const bench: Partial<Record<ServiceName, Record<string, string>>> = {
    // The bench registers more accounts from 127.0.0.1 than a real client may within 10 minutes.
    "db-service": { REGISTER_ADDRESS_MAX: "100000" },
  };
  const serviceEnvFor = (extra?: Partial<Record<ServiceName, Record<string, string>>>) =>
    Object.fromEntries(SERVICES.map((s) => [s, { ...bench[s], ...opts.serviceEnv?.[s], ...extra?.[s] }])) as Partial<
      Record<ServiceName, Record<string, string>>
    >;
  let run = 0;
  const start = (env: Record<string, string>, extra?: Partial<Record<ServiceName, Record<string, string>>>) => {
    const dir = join(dataDir, `services-${++run}`);
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o755);
    return startStack({
      dataDir: dir,
      databaseUrl: pg.url,
      kafkaBrokers: kafka.brokers,
      jwtSecret: JWT_SECRET,
      output: "capture",
      env: { LOG_LEVEL: "warn", ...env },
      serviceEnv: serviceEnvFor(extra),
    });
  };
  let stack: Stack;
  try {
    stack = await start({});
  } catch (err) {
    // A service that would not start (a bad --env, say) must not leave the cluster behind.
    await sql.end({ timeout: 1 });
    await pg.stop();
    await kafka.stop();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(kafka.dataDir, { recursive: true, force: true });
    throw err;
  }
  const bare = spawn(process.execPath, [join(REPO_ROOT, "bench", "bare-server.ts")], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  process.once("exit", () => bare.kill("SIGKILL"));
  const barePort = await new Promise<number>((resolve) =>
    bare.stdout.on("data", (d: Buffer) => {
      const m = /listening (\d+)/.exec(d.toString());
      if (m) resolve(Number(m[1]));
    }),
  );
  const kafkaConfig = join(kafka.dataDir, "server.properties");
  let kafkaPid: number | undefined;
  const store: Store = {
    get stack() {
      return stack;
    },
    bareUrl: `http://127.0.0.1:${barePort}`,
    databaseUrl: pg.url,
    sql,
    watched: [
      { name: "gateway", pid: () => stack.services.gateway.child.pid },
      { name: "db-service", pid: () => stack.services["db-service"].child.pid },
      { name: "log-service", pid: () => stack.services["log-service"].child.pid },
      { name: "PostgreSQL", pid: () => pg.pid, tree: true },
      {
        name: "Kafka",
        // The broker's launcher does not say the JVM's pid: it is the process running this config.
        pid: () => {
          kafkaPid ??= findProcess((cmd) => cmd.includes("kafka.Kafka") && cmd.includes(kafkaConfig));
          return kafkaPid;
        },
      },
      { name: "bare route", pid: () => bare.pid },
      ...(opts.extraWatched ?? []),
    ],
    async restartServices(env, extra) {
      await stack.stop();
      stack = await start(env, extra);
    },
    async stop() {
      bare.kill("SIGTERM");
      await stack.stop();
      await sql.end({ timeout: 5 });
      await pg.stop();
      await kafka.stop();
      rmSync(dataDir, { recursive: true, force: true });
      rmSync(kafka.dataDir, { recursive: true, force: true });
    },
  };
  return store;
}

async function call<T>(base: string, method: string, path: string, body?: unknown, token?: string): Promise<T> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

/**
 * Shoppers registered and logged in through the gateway, as real clients are: their tokens for
 * the REST and Shop scenarios, and (from the token's sub and jti) their sessions for the calls
 * the bench makes to db-service and PostgreSQL directly. Two at a time: a login's password hash
 * takes a core.
 */
export async function registerShoppers(gatewayUrl: string, count: number): Promise<Shopper[]> {
  const tag = Date.now().toString(36).slice(-6);
  const shoppers: Shopper[] = [];
  let next = 0;
  await Promise.all(
    [0, 1].map(async () => {
      while (next < count) {
        const i = next++;
        const username = `bench_${tag}_${i}`;
        await call(gatewayUrl, "POST", "/users/register", {
          sid: `B${tag}${i}`.slice(0, 15),
          username,
          email: `${username}@example.com`,
          password: "bench password",
        });
        const { token } = await call<{ token: string }>(gatewayUrl, "POST", "/users/login", {
          username,
          password: "bench password",
        });
        const claims = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()) as {
          sub: string;
          jti: string;
        };
        shoppers.push({ username, token, userId: Number(claims.sub), sessionId: claims.jti });
      }
    }),
  );
  return shoppers;
}

/** Products of the bench's own, put straight in the database: their stock is the bench's to set. */
export async function createProducts(sql: postgres.Sql, names: string[], stock: number): Promise<number[]> {
  const ids: number[] = [];
  for (const name of names) ids.push(await putProduct(sql, { name, category: "Bench", price: "10.00", stock }));
  return ids;
}

/** Gives the products their stock back, so no scenario runs out. */
export async function setStock(sql: postgres.Sql, ids: readonly number[], stock: number): Promise<void> {
  await sql`UPDATE products SET stock = ${stock} WHERE id = ANY(${ids as number[]})`;
}
