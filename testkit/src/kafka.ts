// A real single-node Kafka broker (KRaft, combined broker+controller) for tests and local runs,
// built from jars that Maven fetches into a cache, so no Docker and no tarball download is needed.
import { type ChildProcess, execFile, type StdioOptions, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, openSync } from "node:fs";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { type AddressInfo, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { silenceKafkajsTimerWarnings } from "@merch/kit";
import { Kafka, logLevel } from "kafkajs";
import { mavenJars } from "./maven.ts";
import { REPO_ROOT } from "./paths.ts";
import { tail } from "./proc.ts";

// kafkajs arms timers with negative delays; the one harmless warning that causes is filtered.
silenceKafkajsTimerWarnings();

// Must match <kafka.version> in testkit/kafka/pom.xml (kafkaJars and the test check it).
// 4.4.0 is on Maven Central but its kafka-tools-api-4.4.0 dependency is not, so it does not resolve.
export const KAFKA_VERSION = "4.3.1";

export interface KafkaBroker {
  brokers: string;
  port: number;
  dataDir: string;
  stop(): Promise<void>;
  start(): Promise<void>;
}

const run = promisify(execFile);
const pomPath = join(REPO_ROOT, "testkit", "kafka", "pom.xml");
const READY_TIMEOUT_MS = 60_000;
const KILL_AFTER_MS = 20_000;
const SETPRIV = "/usr/bin/setpriv";

/** The broker's classpath, fetched by Maven into .cache/kafka on first use. */
function kafkaJars(): Promise<string> {
  const cacheDir = resolve(process.env.KAFKA_CACHE_DIR ?? join(REPO_ROOT, ".cache", "kafka"));
  return mavenJars({
    pom: pomPath,
    dir: join(cacheDir, `kafka-${KAFKA_VERSION}`),
    expect: `kafka_2.13-${KAFKA_VERSION}.jar`,
    mismatch: `${pomPath} does not pin Kafka ${KAFKA_VERSION} (KAFKA_VERSION in testkit/src/kafka.ts)`,
  });
}

const children = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

export async function startKafka(opts: { port?: number; dataDir?: string } = {}): Promise<KafkaBroker> {
  const libs = await kafkaJars();
  const dataDir = resolve(opts.dataDir ?? (await mkdtemp(join(tmpdir(), "kafka-"))));
  await mkdir(dataDir, { recursive: true });
  const [port, controllerPort] = await freePorts(opts.port);
  const brokers = `127.0.0.1:${port}`;
  const configFile = join(dataDir, "server.properties");
  const log4jFile = join(dataDir, "log4j2.properties");
  const logFile = join(dataDir, "broker.log");
  const logDir = join(dataDir, "kraft-logs");

  await writeFile(configFile, serverProperties(port, controllerPort, logDir));
  await writeFile(log4jFile, LOG4J2_PROPERTIES);

  const java = (mainClass: string, args: string[], heap: string[]) => [
    ...heap,
    "-Djava.awt.headless=true",
    `-Dlog4j2.configurationFile=${log4jFile}`,
    "-cp",
    join(libs, "*"),
    mainClass,
    ...args,
  ];

  if (!existsSync(join(logDir, "meta.properties"))) {
    const format = ["format", "-t", randomClusterId(), "-c", configFile];
    await run(javaBin(), java("kafka.tools.StorageTool", format, ["-Xmx256m"])).catch((err: ExecError) => {
      throw new Error(`Kafka storage format in ${logDir} failed:\n${output(err)}`);
    });
  }

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const start = async () => {
    if (child) return;
    const out = openSync(logFile, "a");
    const args = java("kafka.Kafka", [configFile], ["-Xms256m", "-Xmx512m", "-XX:+UseG1GC"]);
    const stdio: StdioOptions = ["ignore", out, out];
    // setpriv makes the kernel kill the JVM even if this process dies without running 'exit' handlers.
    const proc: ChildProcess = existsSync(SETPRIV)
      ? spawn(SETPRIV, ["--pdeathsig", "KILL", javaBin(), ...args], { stdio })
      : spawn(javaBin(), args, { stdio });
    closeSync(out);
    child = proc;
    children.add(proc);
    exited = new Promise((resolveExit) =>
      proc.once("exit", () => {
        children.delete(proc);
        if (child === proc) child = undefined;
        resolveExit();
      }),
    );
    try {
      await waitUntilReady(brokers, exited, logFile);
    } catch (err) {
      await stop();
      throw err;
    }
  };

  const stop = async () => {
    const proc = child;
    if (!proc) return;
    proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), KILL_AFTER_MS);
    await exited;
    clearTimeout(timer);
  };

  await start();
  return { brokers, port, dataDir, start, stop };
}

async function waitUntilReady(brokers: string, exited: Promise<void>, logFile: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  // No kafkajs retries: each probe fails fast and this loop owns the timing and the deadline.
  const kafka = new Kafka({
    brokers: [brokers],
    clientId: "kafka-ready-probe",
    logLevel: logLevel.NOTHING,
    connectionTimeout: 1000,
    retry: { retries: 0 },
  });
  let lastError: unknown;
  while (!gone && Date.now() < deadline) {
    const admin = kafka.admin();
    try {
      await admin.connect();
      await admin.listTopics();
      // Makes the broker create __consumer_offsets now, so the first consumer group join neither
      // waits for it nor makes kafkajs log "The group coordinator is not available" at ERROR.
      await admin.describeGroups(["kafka-ready-probe"]);
      return;
    } catch (err) {
      lastError = err;
    } finally {
      await admin.disconnect().catch(() => {});
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  const why = gone ? "exited before becoming ready" : `not ready after ${READY_TIMEOUT_MS / 1000}s (${lastError})`;
  throw new Error(`Kafka broker on ${brokers} ${why}. Tail of ${logFile}:\n${tail(logFile, 40)}`);
}

function serverProperties(port: number, controllerPort: number, logDir: string): string {
  return `${Object.entries({
    "process.roles": "broker,controller",
    "node.id": 1,
    "controller.quorum.voters": `1@127.0.0.1:${controllerPort}`,
    listeners: `PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    "advertised.listeners": `PLAINTEXT://127.0.0.1:${port}`,
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "log.dirs": logDir,
    "num.partitions": 3,
    "auto.create.topics.enable": false,
    "offsets.topic.replication.factor": 1,
    // 50 partitions (the default) makes the first consumer-group join noticeably slower.
    "offsets.topic.num.partitions": 3,
    "transaction.state.log.replication.factor": 1,
    "transaction.state.log.min.isr": 1,
    "share.coordinator.state.topic.replication.factor": 1,
    "share.coordinator.state.topic.min.isr": 1,
    "min.insync.replicas": 1,
    "group.initial.rebalance.delay.ms": 0,
  })
    .map(([k, v]) => `${k}=${v}`)
    .join("\n")}\n`;
}

const LOG4J2_PROPERTIES = `status = warn
shutdownHook = disable
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = STDOUT
`;

type ExecError = Error & { stdout?: string; stderr?: string };

function output(err: ExecError): string {
  return `${err.stdout ?? ""}${err.stderr ?? ""}`.trim() || err.message;
}

function javaBin(): string {
  return process.env.JAVA_HOME ? join(process.env.JAVA_HOME, "bin", "java") : "java";
}

// Kafka cluster ids are 16 random bytes in unpadded base64url; Kafka itself avoids a leading '-'
// because it would be parsed as a command-line flag.
function randomClusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString("base64url");
    if (!id.startsWith("-")) return id;
  }
}

// Both ports are held open together so the broker and controller never get the same one.
async function freePorts(wanted?: number): Promise<[number, number]> {
  const listen = (port: number) =>
    new Promise<Server>((ok, fail) => {
      const srv = createServer();
      srv.once("error", fail);
      srv.listen(port, "127.0.0.1", () => ok(srv));
    });
  const portOf = (srv: Server) => (srv.address() as AddressInfo).port;
  const open: Server[] = [];
  try {
    const broker = await listen(wanted ?? 0);
    open.push(broker);
    const controller = await listen(0);
    open.push(controller);
    return [portOf(broker), portOf(controller)];
  } finally {
    await Promise.all(open.map((srv) => new Promise((done) => srv.close(done))));
  }
}
