// kit's public face: what the three services share. Each name is exported from the module that
// owns it; kit/src/healthcheck.ts is not here, it is a script Docker's HEALTHCHECK runs by path.
export { ConfigError, type Env, EnvReader, readConfig } from "./config.ts";
export {
  ERROR_DOMAIN,
  type FieldViolation,
  fromValidationError,
  invalidArgument,
  type RefusalDetails,
  reasonOf,
  retryAfterOf,
  rpcError,
  validation,
  violationsOf,
} from "./errors.ts";
export { type FollowOptions, HealthRegistry, type ServingStatus } from "./health.ts";
export { silenceKafkajsTimerWarnings } from "./kafkajs-warnings.ts";
export { type DualHandler, type DualListener, listenDual, MAX_CONCURRENT_STREAMS } from "./listener.ts";
export type { LevelName, LogRecord } from "./log-record.ts";
export { createLogger, type Logger } from "./logger.ts";
export { runMain } from "./main.ts";
export { Counter, Gauge, Histogram, observeServer, SECONDS_BUCKETS, ServiceMetrics, traceClient } from "./metrics.ts";
export { raceAbort } from "./race.ts";
export {
  ANSWERS,
  type Answer,
  ErrorReason,
  publicReasonNames,
  REASON_OF_CODE,
  type Reason,
  reasonByName,
  reasonName,
} from "./reasons.ts";
export { registerReflection } from "./reflection.ts";
export { isSecretName, SECRET_NAME_PARTS } from "./secret-names.ts";
export { type RpcServer, type RpcServerOptions, startRpcServer } from "./serve.ts";
export {
  CREDENTIAL_HEADER,
  MIN_CREDENTIAL_LENGTH,
  readServiceCredential,
  requireServiceCredential,
  sendServiceCredential,
} from "./service-credential.ts";
export { GuardedSessionManager } from "./session-manager.ts";
export { onShutdown } from "./shutdown.ts";
export {
  activeIds,
  type Context,
  context,
  contextFromHeaders,
  contextOfIds,
  endSpan,
  injectHeaders,
  inSpan,
  isExporting,
  type Link,
  propagation,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  startTracing,
  TRACING_ENV,
  type TracingSetup,
  trace,
  tracer,
} from "./tracing.ts";
