import { type Logger, pino } from "pino";
import { activeIds } from "./tracing.ts";

export type { Logger };

/** Structured JSON logs on stdout; secrets are redacted wherever they appear in a log object. */
export function createLogger(service: string, level = process.env.LOG_LEVEL ?? "info"): Logger {
  return pino({
    name: service,
    level,
    // A line written while serving a traced request says which trace and span it belongs to.
    mixin() {
      const ids = activeIds();
      return ids ? { trace_id: ids.traceId, span_id: ids.spanId } : {};
    },
    redact: {
      paths: [
        "password",
        "*.password",
        "current_password",
        "*.current_password",
        "token",
        "*.token",
        "authorization",
        "*.authorization",
        "req.headers.authorization",
      ],
      censor: "[redacted]",
    },
  });
}
