import { ConfigError } from "./config.ts";
import { createLogger, type Logger } from "./logger.ts";
import { onShutdown } from "./shutdown.ts";
import { startTracing } from "./tracing.ts";

/**
 * A service's entrypoint: start it with a logger, stop it gracefully on SIGTERM or SIGINT, and
 * turn a bad environment into one clear message and exit code 2 rather than a stack trace.
 */
export async function runMain(name: string, start: (logger: Logger) => Promise<{ close(): Promise<void> }>) {
  const tracing = await startTracing(name);
  const logger = createLogger(name);
  try {
    const service = await start(logger);
    if (tracing.exporting) logger.info("exporting traces (OTEL_EXPORTER_OTLP_ENDPOINT)");
    onShutdown(logger, async () => {
      await service.close();
      // What the last requests traced goes out before the process ends.
      await tracing.shutdown();
    });
  } catch (err) {
    if (err instanceof ConfigError) {
      logger.fatal(err.message);
      process.exit(2);
    }
    throw err;
  }
}
