import assert from "node:assert/strict";
import { test } from "node:test";
import { LoginLimiter } from "./login-limiter.ts";

test("locks an (account, address) pair after the limit until its window ends; success forgives", () => {
  let now = 1_000_000;
  const limiter = new LoginLimiter({ maxFailures: 3, windowS: 60, now: () => now });
  const key = LoginLimiter.key("Alice", "10.0.0.1");
  assert.equal(key, LoginLimiter.key("alice", "10.0.0.1"), "names are compared without case");
  for (let i = 0; i < 3; i++) {
    assert.equal(limiter.retryAfter(key), 0);
    limiter.recordFailure(key);
  }
  assert.equal(limiter.retryAfter(key), 60);
  assert.equal(limiter.retryAfter(LoginLimiter.key("alice", "10.0.0.2")), 0, "another address is not locked");
  now += 45_000;
  assert.equal(limiter.retryAfter(key), 15);
  now += 15_001;
  assert.equal(limiter.retryAfter(key), 0, "the window ended");
  limiter.recordFailure(key);
  limiter.recordFailure(key);
  limiter.recordSuccess(key);
  limiter.recordFailure(key);
  assert.equal(limiter.retryAfter(key), 0, "a success started the count again");
});

test("memory stays bounded under a flood of distinct names", () => {
  const limiter = new LoginLimiter({ maxFailures: 1, windowS: 60, maxEntries: 100 });
  for (let i = 0; i < 10_000; i++) limiter.recordFailure(LoginLimiter.key(`user${i}`, "10.0.0.1"));
  assert.equal(limiter.retryAfter(LoginLimiter.key("user0", "10.0.0.1")), 0, "the oldest were forgotten");
  assert.ok(limiter.retryAfter(LoginLimiter.key("user9999", "10.0.0.1")) > 0);
});
