import { randomUUID } from "node:crypto";
import { errors, jwtVerify, SignJWT } from "jose";

export const TOKEN_LIFETIME_S = 24 * 60 * 60;

export interface TokenSettings {
  secret: Uint8Array;
  issuer: string;
  audience: string;
}

export async function issueToken(settings: TokenSettings, userId: number, now = new Date()): Promise<string> {
  const iat = Math.floor(now.getTime() / 1000);
  return new SignJWT({})
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(String(userId))
    .setIssuer(settings.issuer)
    .setAudience(settings.audience)
    .setIssuedAt(iat)
    .setExpirationTime(iat + TOKEN_LIFETIME_S)
    .setJti(randomUUID())
    .sign(settings.secret);
}

export type TokenCheck = { ok: true; userId: number } | { ok: false; reason: string };

/**
 * Verifies signature (HS256 only: `alg: none` and every other algorithm are refused), issuer,
 * audience, expiry, and that every claim we issue is present.
 */
export async function verifyToken(settings: TokenSettings, token: string): Promise<TokenCheck> {
  try {
    const { payload } = await jwtVerify(token, settings.secret, {
      algorithms: ["HS256"],
      issuer: settings.issuer,
      audience: settings.audience,
      requiredClaims: ["sub", "iss", "aud", "iat", "exp", "jti"],
      // A token never lives longer than we issue them for, whatever its exp says.
      maxTokenAge: TOKEN_LIFETIME_S,
    });
    const userId = Number(payload.sub);
    if (!/^[1-9][0-9]{0,9}$/.test(payload.sub ?? "") || userId > 2_147_483_647) {
      return { ok: false, reason: "bad_subject" };
    }
    return { ok: true, userId };
  } catch (err) {
    if (err instanceof errors.JWTExpired) return { ok: false, reason: "expired" };
    if (err instanceof errors.JWSSignatureVerificationFailed) return { ok: false, reason: "bad_signature" };
    if (err instanceof errors.JWTClaimValidationFailed) return { ok: false, reason: `bad_claim_${err.claim}` };
    if (err instanceof errors.JOSEAlgNotAllowed) return { ok: false, reason: "algorithm_not_allowed" };
    return { ok: false, reason: "malformed" };
  }
}
