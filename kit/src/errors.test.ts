import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { RE2JS } from "@bufbuild/re2";
import { storeRegexMatch } from "./errors.ts";

// storeRegexMatch takes some of the rules' patterns from RE2 to the platform's RegExp: for each
// pattern of proto/merch/common/v1/rules.proto, it must give RE2's verdict on every value.

const RULES = readFileSync(new URL("../../proto/merch/common/v1/rules.proto", import.meta.url), "utf8");
/** The patterns written `this.matches('…')` without escapes: the ones RegExp may take. */
const PATTERNS = [...RULES.matchAll(/this\.matches\('([^'\\]*)'\)/g)].map((m) => m[1] as string);

function values(): string[] {
  const out = ["", " ", "a", "abc\n", "\nabc", "a\u0000b", "\u007f", "é", "ab€", "😀", "a😀", "\ud800", "ab\u2028"];
  for (let c = 0; c < 128; c++) out.push(String.fromCharCode(c), `ab${String.fromCharCode(c)}cd`);
  for (const n of [1, 2, 3, 14, 15, 16, 49, 50, 51, 254, 255, 256]) {
    out.push("x".repeat(n), "7".repeat(n), `${"x".repeat(n - 1)}😀`, `${"x".repeat(n - 1)}é`, `${"x".repeat(n)}\n`);
  }
  return out;
}

test("the store's patterns get RE2's verdict on every value", () => {
  assert.ok(PATTERNS.length >= 3, `found only ${PATTERNS.length} patterns in rules.proto`);
  for (const pattern of PATTERNS) {
    const re2 = RE2JS.compile(pattern);
    for (const value of values()) {
      assert.equal(storeRegexMatch(pattern, value), re2.test(value), `${pattern} on ${JSON.stringify(value)}`);
    }
  }
});

test("a pattern RegExp could read otherwise stays with RE2", () => {
  // In RE2 `[[:digit:]]` is a POSIX class; RegExp would read `[[:digit:]` then a literal `]`.
  assert.equal(storeRegexMatch("^[[:digit:]]{1,3}$", "12"), true);
  assert.equal(storeRegexMatch("^[[:digit:]]{1,3}$", "[]"), false);
  // The idempotency key's own pattern: printable ASCII only, 1 to 255 of it.
  assert.equal(storeRegexMatch("^[ -~]{1,255}$", "gateway:3b241101-e2bb-4255-8caf-4136c566a962"), true);
  assert.equal(storeRegexMatch("^[ -~]{1,255}$", "key\u0000"), false);
});
