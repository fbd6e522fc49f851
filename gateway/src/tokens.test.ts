import assert from "node:assert/strict";
import { test } from "node:test";
import { issueToken, TOKEN_LIFETIME_S, TokenVerifier, verifyToken } from "./tokens.ts";

const settings = {
  secret: new TextEncoder().encode("unit-test-secret-0123456789abcdef0123"),
  issuer: "iss",
  audience: "aud",
};

test("a remembered token still expires on time, and a forgery of it is still refused", async () => {
  const issuedAt = new Date(Math.floor(Date.now() / 1000) * 1000);
  const token = await issueToken(settings, 42, issuedAt);
  let now = issuedAt.getTime();
  const verifier = new TokenVerifier(settings, { now: () => now });
  assert.deepEqual(await verifier.verify(token), { ok: true, userId: 42 });
  assert.deepEqual(await verifier.verify(token), { ok: true, userId: 42 }, "from memory");

  const [h, p, sig] = token.split(".");
  const forged = `${h}.${Buffer.from(JSON.stringify({ sub: "1" })).toString("base64url")}.${sig}`;
  assert.equal((await verifier.verify(forged)).ok, false);
  assert.equal((await verifier.verify(`${h}.${p}.${sig}x`)).ok, false);

  now += TOKEN_LIFETIME_S * 1000 - 1;
  assert.equal((await verifier.verify(token)).ok, true);
  now += 1;
  assert.deepEqual(await verifier.verify(token), { ok: false, reason: "expired" });
});

test("issued tokens carry every claim, for 24 hours", async () => {
  const token = await issueToken(settings, 7);
  const claims = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()) as Record<string, unknown>;
  assert.equal(claims.sub, "7");
  assert.equal(claims.iss, "iss");
  assert.equal(claims.aud, "aud");
  assert.equal(Number(claims.exp) - Number(claims.iat), TOKEN_LIFETIME_S);
  assert.match(String(claims.jti), /^[0-9a-f-]{36}$/);
  assert.deepEqual(await verifyToken({ ...settings, audience: "other" }, token), {
    ok: false,
    reason: "bad_claim_aud",
  });
});
