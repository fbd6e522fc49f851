import { runMain } from "@merch/kit/main";
import { startDbService } from "./app.ts";
import { loadConfig } from "./config.ts";

await runMain("db-service", (logger) => startDbService(loadConfig(), logger));
