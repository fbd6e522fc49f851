import { runMain, silenceKafkajsTimerWarnings } from "@merch/kit";
import { startLogService } from "./app.ts";
import { loadConfig } from "./config.ts";

silenceKafkajsTimerWarnings();
await runMain("log-service", (logger) => startLogService(loadConfig(), logger));
