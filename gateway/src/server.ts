import { ConfigError } from "@merch/kit/config";
import { createLogger } from "@merch/kit/logger";
import { onShutdown } from "@merch/kit/shutdown";
import { buildGateway } from "./app.ts";
import { loadConfig } from "./config.ts";

const logger = createLogger("gateway");
try {
  const config = loadConfig();
  if (config.jwtSecretGenerated) {
    logger.warn(
      "!!! JWT_SECRET is not set: using a random secret for this run only. Tokens will not survive a restart." +
        " Set JWT_SECRET (at least 32 bytes) for anything but local development. !!!",
    );
  }
  const gateway = await buildGateway(config, logger);
  await gateway.app.listen({ port: config.port, host: config.host });
  onShutdown(logger, () => gateway.close());
} catch (err) {
  if (err instanceof ConfigError) {
    logger.fatal(err.message);
    process.exit(2);
  }
  throw err;
}
