import { ConfigError } from "@merch/kit/config";
import { createLogger } from "@merch/kit/logger";
import { onShutdown } from "@merch/kit/shutdown";
import { startDbService } from "./app.ts";
import { loadConfig } from "./config.ts";

const logger = createLogger("db-service");
try {
  const config = loadConfig();
  const service = await startDbService(config, logger);
  onShutdown(logger, () => service.close());
} catch (err) {
  if (err instanceof ConfigError) {
    logger.fatal(err.message);
    process.exit(2);
  }
  throw err;
}
