import { ConfigError } from "@merch/kit/config";
import { createLogger } from "@merch/kit/logger";
import { onShutdown } from "@merch/kit/shutdown";
import { startLogService } from "./app.ts";
import { loadConfig } from "./config.ts";
import { silenceKafkajsTimerWarnings } from "./kafkajs-warnings.ts";

silenceKafkajsTimerWarnings();
const logger = createLogger("log-service");
try {
  const config = loadConfig();
  const service = await startLogService(config, logger);
  onShutdown(logger, () => service.close());
} catch (err) {
  if (err instanceof ConfigError) {
    logger.fatal(err.message);
    process.exit(2);
  }
  throw err;
}
