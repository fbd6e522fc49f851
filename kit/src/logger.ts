import { type Logger, pino } from "pino";

export type { Logger };

/** Structured JSON logs on stdout; secrets are redacted wherever they appear in a log object. */
export function createLogger(service: string, level = process.env.LOG_LEVEL ?? "info"): Logger {
  return pino({
    name: service,
    level,
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
