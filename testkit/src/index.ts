// testkit: the real parts the store runs on, started on this machine for tests, benchmarks and
// `npm start` (PostgreSQL, Kafka, a service's process), and what reads and checks them. It sits
// below the services: their tests use it, it imports none of them. Never in an image.
export { KAFKA_VERSION, type KafkaBroker, startKafka } from "./kafka.ts";
export {
  type ChannelReader,
  type ChannelRecord,
  followLogChannel,
  type ReadOptions,
  readIds,
  readLogChannel,
  readLogFile,
  topicSize,
} from "./log-channel.ts";
export { mavenJars } from "./maven.ts";
export { REPO_ROOT } from "./paths.ts";
export { freePort } from "./ports.ts";
export {
  type PostgresServer,
  type StartOptions,
  startPostgres,
  startTestPostgres,
  type TestPostgres,
} from "./postgres.ts";
export { fetchWithin, makeRunDir, type OwnedProcess, poll, spawnOwned, tail } from "./proc.ts";
export { rejectsFields, rejectsWith } from "./rpc-assert.ts";
export {
  type OutputMode,
  runService,
  SERVICE_NODE_FLAGS,
  type ServiceName,
  type ServiceProcess,
  waitForOutput,
} from "./services.ts";
