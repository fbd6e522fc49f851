import { runMain } from "@merch/kit";
import { startDbService } from "./app.ts";
import { loadConfig } from "./config.ts";
import { isDriverWriteFault } from "./db.ts";

await runMain("db-service", async (logger) => {
  const service = await startDbService(loadConfig(), logger);
  // postgres.js 3.4.9 can throw from a socket callback, outside any query, when the server dies
  // under load (`Cannot read properties of null (reading 'write')` in connection.js: upstream
  // porsager/postgres#1154, #1208). Nothing of ours is wrong then but the pool: it is given up
  // and a new one opened once the database answers, and the service keeps serving. Any other
  // uncaught error ends the process, for the supervisor to start a clean one.
  process.on("uncaughtException", (err) => {
    if (isDriverWriteFault(err)) {
      logger.error({ err }, "the PostgreSQL driver failed on a dead connection; opening a new pool");
      service.database.reset("driver fault");
      return;
    }
    logger.fatal({ err }, "uncaught exception");
    process.exit(1);
  });
  return service;
});
