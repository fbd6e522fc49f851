// Applies db-init/migrations to DATABASE_URL and exits: compose's one-shot db-init job
// (db-service also migrates at start-up; this lets an operator do it first, on its own).
import { readConfig } from "@merch/kit/config";
import { createLogger } from "@merch/kit/logger";
import { migrate } from "./migrate.ts";

/** What the job reads (besides LOG_LEVEL, the logger's); exported so test/deploy can hold compose.yaml to it. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): { databaseUrl: string } {
  return readConfig(
    (e) => ({ databaseUrl: e.required("DATABASE_URL", "postgres://user:password@host:5432/merch") }),
    env,
  );
}

if (import.meta.main) {
  const logger = createLogger("db-init");
  try {
    const report = await migrate(loadConfig().databaseUrl);
    logger.info(report, report.applied.length > 0 ? "migrations applied" : "the database is up to date");
  } catch (err) {
    logger.fatal({ err }, "migration failed");
    process.exitCode = 1;
  }
}
