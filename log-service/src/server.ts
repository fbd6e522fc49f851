import { runMain } from "@merch/kit/main";
import { startLogService } from "./app.ts";
import { loadConfig } from "./config.ts";
import { silenceKafkajsTimerWarnings } from "./kafkajs-warnings.ts";

silenceKafkajsTimerWarnings();
await runMain("log-service", (logger) => startLogService(loadConfig(), logger));
