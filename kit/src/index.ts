// kit's public face: what the three services share. Each name is exported from the module that
// owns it; kit/src/healthcheck.ts is not here, it is a script Docker's HEALTHCHECK runs by path.
export { ConfigError, type Env, EnvReader, readConfig } from "./config.ts";
export {
  type CarriedRefusal,
  carryRefusal,
  type FieldViolation,
  invalidArgument,
  reasonOf,
  refusalError,
  retryAfterOf,
  rpcError,
  storeValidator,
  validation,
  violationsOf,
} from "./errors.ts";
export type { ServingStatus } from "./health.ts";
export { silenceKafkajsTimerWarnings } from "./kafkajs-warnings.ts";
export { type DualHandler, MAX_CONCURRENT_STREAMS } from "./listener.ts";
export type { LevelName, LogRecord } from "./log-record.ts";
export { createLogger, type Logger } from "./logger.ts";
export { runMain } from "./main.ts";
export { Counter, Gauge, Histogram, SECONDS_BUCKETS, ServiceMetrics, traceClient } from "./metrics.ts";
export { type MetricsListen, readMetricsListen, startMetricsServer } from "./metrics-server.ts";
export { raceAbort } from "./race.ts";
export {
  ANSWERS,
  type Answer,
  ErrorReason,
  REASON_OF_CODE,
  type Reason,
  reasonByName,
  reasonName,
} from "./reasons.ts";
export { isSecretName, SECRET_NAME_PARTS } from "./secret-names.ts";
export { logFailure, startRpcServer } from "./serve.ts";
export {
  CREDENTIAL_HEADER,
  readServiceCredential,
  sendServiceCredential,
} from "./service-credential.ts";
export { GuardedSessionManager } from "./session-manager.ts";
export {
  activeIds,
  type Context,
  context,
  endSpan,
  inSpan,
  isExporting,
  type Link,
  linkToActive,
  linkToIds,
  propagation,
  type Span,
  SpanKind,
  SpanStatusCode,
  startBatchSpan,
  startTracing,
  TRACING_ENV,
  type TracingSetup,
  trace,
  tracer,
} from "./tracing.ts";
