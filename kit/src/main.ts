import { ConfigError } from "./config.ts";
import { createLogger, type Logger } from "./logger.ts";
import { onShutdown } from "./shutdown.ts";

/**
 * A service's entrypoint: start it with a logger, stop it gracefully on SIGTERM or SIGINT, and
 * turn a bad environment into one clear message and exit code 2 rather than a stack trace.
 */
export async function runMain(name: string, start: (logger: Logger) => Promise<{ close(): Promise<void> }>) {
  const logger = createLogger(name);
  try {
    const service = await start(logger);
    onShutdown(logger, () => service.close());
  } catch (err) {
    if (err instanceof ConfigError) {
      logger.fatal(err.message);
      process.exit(2);
    }
    throw err;
  }
}
