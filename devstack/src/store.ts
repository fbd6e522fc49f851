import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type KafkaBroker, startKafka } from "@merch/testkit";
import { type Stack, type StackOptions, startStack } from "./stack.ts";

export const TEST_JWT_SECRET = "test-secret-of-the-e2e-suites-0123456789abcdef";

export interface TestStore {
  url: string;
  stack: Stack;
  kafka?: KafkaBroker | undefined;
  dataDir: string;
  stop(): Promise<void>;
}

/** The three real services, a real PostgreSQL 17 and, when asked, a real Kafka broker. */
export async function startTestStore(
  opts: {
    kafka?: boolean;
    serviceEnv?: StackOptions["serviceEnv"];
    /** Durable commits (fsync on), for tests that kill PostgreSQL and count what survived. */
    durable?: boolean;
  } = {},
): Promise<TestStore> {
  const dataDir = mkdtempSync(join(tmpdir(), "merch-store-"));
  chmodSync(dataDir, 0o755);
  const kafka = opts.kafka ? await startKafka() : undefined;
  let stack: Stack;
  try {
    stack = await startStack({
      dataDir,
      fastPostgres: !opts.durable,
      kafkaBrokers: kafka?.brokers,
      jwtSecret: TEST_JWT_SECRET,
      output: "capture",
      serviceEnv: opts.serviceEnv,
    });
  } catch (err) {
    await kafka?.stop();
    throw err;
  }
  return {
    url: stack.gatewayUrl,
    stack,
    kafka,
    dataDir,
    async stop() {
      await stack.stop();
      await kafka?.stop();
      rmSync(dataDir, { recursive: true, force: true });
      if (kafka) rmSync(kafka.dataDir, { recursive: true, force: true });
    },
  };
}
