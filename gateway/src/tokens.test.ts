import assert from "node:assert/strict";
import { test } from "node:test";
import { issueToken, TOKEN_LIFETIME_S, TokenVerifier, verifyToken } from "./tokens.ts";

const settings = {
  secret: new TextEncoder().encode("unit-test-secret-0123456789abcdef0123"),
  issuer: "iss",
  audience: "aud",
};

const SESSION = "0b8e4c6e-5a4f-4a8e-9c1e-2f4d7a8b9c0d";
const inADay = (from = Date.now()) => new Date(from + TOKEN_LIFETIME_S * 1000);

test("a remembered token still expires on time, and a forgery of it is still refused", async () => {
  const issuedAt = new Date(Math.floor(Date.now() / 1000) * 1000);
  const token = await issueToken(settings, { userId: 42, sessionId: SESSION }, inADay(issuedAt.getTime()), issuedAt);
  let now = issuedAt.getTime();
  const verifier = new TokenVerifier(settings, { now: () => now });
  const subject = { ok: true, userId: 42, sessionId: SESSION };
  assert.deepEqual(await verifier.verify(token), subject);
  assert.deepEqual(await verifier.verify(token), subject, "from memory");

  const [h, p, sig] = token.split(".");
  const forged = `${h}.${Buffer.from(JSON.stringify({ sub: "1" })).toString("base64url")}.${sig}`;
  assert.equal((await verifier.verify(forged)).ok, false);
  assert.equal((await verifier.verify(`${h}.${p}.${sig}x`)).ok, false);

  now += TOKEN_LIFETIME_S * 1000 - 1;
  assert.equal((await verifier.verify(token)).ok, true);
  now += 1;
  assert.deepEqual(await verifier.verify(token), { ok: false, reason: "expired" });
});

test("issued tokens carry every claim, the session as jti, for 24 hours", async () => {
  const token = await issueToken(settings, { userId: 7, sessionId: SESSION }, inADay());
  const claims = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()) as Record<string, unknown>;
  assert.equal(claims.sub, "7");
  assert.equal(claims.iss, "iss");
  assert.equal(claims.aud, "aud");
  assert.equal(Number(claims.exp) - Number(claims.iat), TOKEN_LIFETIME_S);
  assert.equal(claims.jti, SESSION);
  assert.deepEqual(await verifyToken({ ...settings, audience: "other" }, token), {
    ok: false,
    reason: "bad_claim_aud",
  });
});

test("a login's token lasts 24 hours to the second when its session opened in the second before", async () => {
  // db-service opened the session at 1000.9 s by the database's clock; the gateway signs at 1001.1 s.
  const opened = 1_700_000_000_900;
  const token = await issueToken(settings, { userId: 7, sessionId: SESSION }, inADay(opened), new Date(opened + 200));
  const claims = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()) as Record<string, number>;
  assert.equal(claims.exp, Math.floor(inADay(opened).getTime() / 1000), "ends with its session");
  assert.equal((claims.exp ?? 0) - (claims.iat ?? 0), TOKEN_LIFETIME_S);
});

test("a token ends with its session, even if that is sooner than 24 hours", async () => {
  const now = Date.now();
  const token = await issueToken(settings, { userId: 7, sessionId: SESSION }, new Date(now + 60_000), new Date(now));
  const claims = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()) as Record<string, number>;
  assert.ok((claims.exp ?? 0) - (claims.iat ?? 0) <= 60);
});

test("a token whose jti is not a session id is refused", async () => {
  const { SignJWT } = await import("jose");
  const iat = Math.floor(Date.now() / 1000);
  const forged = await new SignJWT({})
    .setProtectedHeader({ alg: "HS256" })
    .setSubject("7")
    .setIssuer("iss")
    .setAudience("aud")
    .setIssuedAt(iat)
    .setExpirationTime(iat + 60)
    .setJti("not-a-session")
    .sign(settings.secret);
  assert.deepEqual(await verifyToken(settings, forged), { ok: false, reason: "bad_claim_jti" });
});
