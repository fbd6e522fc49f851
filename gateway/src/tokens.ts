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
 * Remembers tokens jose has already verified, until they expire: a client sends the same token
 * with every request, and an HMAC check through WebCrypto costs more than the rest of a request
 * in the gateway. Only successful checks are kept; the account behind the token is still asked
 * of db-service on every request. Bounded: the oldest entries go first.
 */
export class TokenVerifier {
  readonly #settings: TokenSettings;
  readonly #max: number;
  readonly #now: () => number;
  readonly #verified = new Map<string, { userId: number; expiresAt: number }>();

  constructor(settings: TokenSettings, opts: { maxEntries?: number; now?: () => number } = {}) {
    this.#settings = settings;
    this.#max = opts.maxEntries ?? 10_000;
    this.#now = opts.now ?? Date.now;
  }

  async verify(token: string): Promise<TokenCheck> {
    const known = this.#verified.get(token);
    if (known) {
      if (known.expiresAt > this.#now()) return { ok: true, userId: known.userId };
      this.#verified.delete(token);
      return { ok: false, reason: "expired" };
    }
    const check = await verifyToken(this.#settings, token);
    if (check.ok) {
      const expiresAt = expiryOf(token);
      if (expiresAt !== undefined) {
        this.#verified.set(token, { userId: check.userId, expiresAt });
        if (this.#verified.size > this.#max) {
          const oldest = this.#verified.keys().next().value;
          if (oldest !== undefined) this.#verified.delete(oldest);
        }
      }
    }
    return check;
  }
}

/** The exp claim of a token jose has verified, in ms; never later than iat + 24 h. */
function expiryOf(token: string): number | undefined {
  const payload = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()) as {
    exp?: number;
    iat?: number;
  };
  if (typeof payload.exp !== "number" || typeof payload.iat !== "number") return undefined;
  return Math.min(payload.exp, payload.iat + TOKEN_LIFETIME_S) * 1000;
}

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
