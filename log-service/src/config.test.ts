import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { test } from "node:test";
import { ConfigError } from "@merch/kit";
import { REPO_ROOT } from "@merch/testkit";
import { loadConfig } from "./config.ts";
import { SERVER_TS } from "./test-support/index.ts";

test("defaults: loopback only, no broker (file sink), log-channel, 64 MiB spool", () => {
  const c = loadConfig({});
  assert.equal(c.port, 50052);
  assert.deepEqual(c.kafkaBrokers, []);
  assert.equal(c.kafkaTopic, "log-channel");
  assert.equal(c.kafkaClientId, "log-service");
  assert.equal(c.kafkaPartitions, 3);
  assert.equal(c.dataDir, resolve(".data"));
  assert.equal(c.spoolMaxBytes, 64 * 1024 * 1024);
  assert.equal(c.serviceCredential, undefined);
  assert.equal(c.host, "127.0.0.1");
  assert.deepEqual(c.metrics, { port: 9466, host: "127.0.0.1" }, "/metrics on a loopback port of its own");
  assert.equal(c.shutdownGraceMs, 10_000);
});

test("the metrics port and host are checked at start-up", () => {
  assert.throws(
    () => loadConfig({ METRICS_PORT: "http", METRICS_HOST: "not a host!" }),
    (err: unknown) =>
      err instanceof ConfigError &&
      /METRICS_PORT must be an integer/.test(err.message) &&
      /METRICS_HOST must be an IP address or a host name, got "not a host!"/.test(err.message),
  );
  assert.deepEqual(loadConfig({ METRICS_PORT: "9999", METRICS_HOST: "0.0.0.0" }).metrics, {
    port: 9999,
    host: "0.0.0.0",
  });
});

test("values are read and checked, every problem reported at once", () => {
  const c = loadConfig({ KAFKA_BROKERS: "k1:9092, 10.0.0.2:19092", SPOOL_MAX_BYTES: "4096", DATA_DIR: "/var/lib/log" });
  assert.deepEqual(c.kafkaBrokers, ["k1:9092", "10.0.0.2:19092"]);
  assert.equal(c.spoolMaxBytes, 4096);
  assert.equal(c.dataDir, "/var/lib/log");
  assert.throws(
    () =>
      loadConfig({
        PORT: "http",
        KAFKA_BROKERS: "k1:9092,nohost",
        KAFKA_TOPIC: "log channel",
        SPOOL_MAX_BYTES: "12",
        SHUTDOWN_GRACE_MS: "-1",
      }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.problems.length, 5);
      for (const name of ["PORT", "KAFKA_BROKERS", "KAFKA_TOPIC", "SPOOL_MAX_BYTES", "SHUTDOWN_GRACE_MS"]) {
        assert.ok(
          err.problems.some((p) => p.startsWith(name)),
          name,
        );
      }
      return true;
    },
  );
});

test("server.ts exits with code 2 and says what is wrong", () => {
  const run = spawnSync(process.execPath, [SERVER_TS], {
    cwd: REPO_ROOT,
    env: { ...process.env, SPOOL_MAX_BYTES: "lots", PORT: "0" },
    encoding: "utf8",
    timeout: 30_000,
  });
  assert.equal(run.status, 2);
  assert.match(run.stdout, /SPOOL_MAX_BYTES must be an integer/);
});
