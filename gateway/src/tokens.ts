import { errors, jwtVerify, SignJWT } from "jose";

export const TOKEN_LIFETIME_S = 24 * 60 * 60;

export interface TokenSettings {
  secret: Uint8Array;
  issuer: string;
  audience: string;
}

/** Who a verified token speaks for: the account, and the session (login) it came from. */
export interface TokenSubject {
  userId: number;
  /** The token's jti: db-service's session, which logout, a password change and deactivation end. */
  sessionId: string;
}

/**
 * How long before the token a session counts as opened for it: the login that opened it. Past
 * this the token is dated now and ends with the session, sooner than 24 h.
 */
const OPENED_FOR_LOGIN_S = 60;

/**
 * A token for a session db-service opened; it expires with the session, at most 24 h after iat.
 * A login's session was opened a moment before by the database's clock, often in the previous
 * second: dated now, its token would end with the session 86,399 s later. So the token of a session
 * opened within OPENED_FOR_LOGIN_S is dated from the session's opening and lasts its full 24 h,
 * never past the session's end.
 */
export async function issueToken(
  settings: TokenSettings,
  subject: TokenSubject,
  sessionExpiresAt: Date,
  now = new Date(),
): Promise<string> {
  const nowS = Math.floor(now.getTime() / 1000);
  const sessionEndS = Math.floor(sessionExpiresAt.getTime() / 1000);
  const openedS = sessionEndS - TOKEN_LIFETIME_S;
  const iat = openedS <= nowS && nowS - openedS <= OPENED_FOR_LOGIN_S ? openedS : nowS;
  const exp = Math.min(iat + TOKEN_LIFETIME_S, sessionEndS);
  return new SignJWT({})
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(String(subject.userId))
    .setIssuer(settings.issuer)
    .setAudience(settings.audience)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .setJti(subject.sessionId)
    .sign(settings.secret);
}

export type TokenCheck = ({ ok: true } & TokenSubject) | { ok: false; reason: string };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Remembers tokens jose has already verified, until they expire: a client sends the same token
 * with every request, and an HMAC check through WebCrypto costs more than the rest of a request
 * in the gateway. Only the signature and claims are remembered, never that the token still
 * works: whether its session is open is checked by db-service in every call that acts for it,
 * so no revocation waits for this cache. Bounded: the oldest entries go first.
 */
export class TokenVerifier {
  readonly #settings: TokenSettings;
  readonly #max: number;
  readonly #now: () => number;
  readonly #verified = new Map<string, TokenSubject & { expiresAt: number }>();

  constructor(settings: TokenSettings, opts: { maxEntries?: number; now?: () => number } = {}) {
    this.#settings = settings;
    this.#max = opts.maxEntries ?? 10_000;
    this.#now = opts.now ?? Date.now;
  }

  async verify(token: string): Promise<TokenCheck> {
    const known = this.#verified.get(token);
    if (known) {
      if (known.expiresAt > this.#now()) return { ok: true, userId: known.userId, sessionId: known.sessionId };
      this.#verified.delete(token);
      return { ok: false, reason: "expired" };
    }
    const check = await verifyToken(this.#settings, token);
    if (check.ok) {
      const expiresAt = expiryOf(token);
      if (expiresAt !== undefined) {
        this.#verified.set(token, { userId: check.userId, sessionId: check.sessionId, expiresAt });
        if (this.#verified.size > this.#max) {
          const oldest = this.#verified.keys().next().value;
          if (oldest !== undefined) this.#verified.delete(oldest);
        }
      }
    }
    return check;
  }

  /** Forgets a token: logout does, though db-service would refuse it anyway. */
  forget(token: string): void {
    this.#verified.delete(token);
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
    if (!UUID.test(payload.jti ?? "")) return { ok: false, reason: "bad_claim_jti" };
    return { ok: true, userId, sessionId: payload.jti as string };
  } catch (err) {
    if (err instanceof errors.JWTExpired) return { ok: false, reason: "expired" };
    if (err instanceof errors.JWSSignatureVerificationFailed) return { ok: false, reason: "bad_signature" };
    if (err instanceof errors.JWTClaimValidationFailed) return { ok: false, reason: `bad_claim_${err.claim}` };
    if (err instanceof errors.JOSEAlgNotAllowed) return { ok: false, reason: "algorithm_not_allowed" };
    return { ok: false, reason: "malformed" };
  }
}
