import { runMain, startMetricsServer } from "@merch/kit";
import { buildGateway } from "./app.ts";
import { loadConfig } from "./config.ts";

await runMain("gateway", async (logger) => {
  const config = loadConfig();
  if (config.jwtSecretGenerated) {
    logger.warn(
      "!!! JWT_SECRET is not set: using a random secret for this run only. Tokens will not survive a restart." +
        " Set JWT_SECRET (at least 32 bytes) for anything but local development. !!!",
    );
  }
  if (config.serviceCredential === undefined) {
    logger.warn("SERVICE_CREDENTIAL is not set: db-service and log-service will refuse the gateway's calls");
  }
  const gateway = await buildGateway(config, logger);
  await gateway.app.listen({ port: config.port, host: config.host });
  const metrics = await startMetricsServer(config.metrics, { text: () => gateway.metricsText() }, logger);
  return {
    async close() {
      await Promise.all([gateway.close(), metrics.close()]);
    },
  };
});
