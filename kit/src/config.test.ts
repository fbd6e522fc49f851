import assert from "node:assert/strict";
import { test } from "node:test";
import { ConfigError, readConfig } from "./config.ts";

test("defaults apply, values parse, and every problem is reported at once", () => {
  const read = (env: Record<string, string>) =>
    readConfig(
      (e) => ({
        port: e.int("PORT", 8080, 0, 65535),
        url: e.url("UPSTREAM", "http://127.0.0.1:1"),
        origins: e.list("ORIGINS"),
        mode: e.oneOf("MODE", "a", ["a", "b"]),
        secret: e.required("SECRET", "set it"),
      }),
      env,
    );
  assert.deepEqual(read({ SECRET: "s", ORIGINS: " http://a , ,http://b" }), {
    port: 8080,
    url: "http://127.0.0.1:1",
    origins: ["http://a", "http://b"],
    mode: "a",
    secret: "s",
  });
  assert.throws(
    () => read({ PORT: "80x", UPSTREAM: "ftp://x", MODE: "c" }),
    (err: unknown) =>
      err instanceof ConfigError &&
      err.problems.length === 4 &&
      /PORT must be an integer from 0 to 65535, got "80x"/.test(err.message) &&
      /UPSTREAM must be an http/.test(err.message) &&
      /MODE must be one of a, b/.test(err.message) &&
      /SECRET is required: set it/.test(err.message),
  );
});
