import { createHash, timingSafeEqual } from "node:crypto";
import type { DescService } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";
import type { EnvReader } from "./config.ts";
import { rpcError } from "./errors.ts";
import type { Logger } from "./logger.ts";
import { ErrorReason } from "./reasons.ts";

/**
 * The store's services trust each other through one shared secret, sent in this header on every
 * internal call. A secret in a header is what `buf curl -H` and grpcurl `-H` can send, and it
 * needs no certificates to run the store with two commands; its limits (anyone who reads it can
 * act as the store, so it travels only on a private network or loopback) are in the README.
 */
export const CREDENTIAL_HEADER = "x-service-credential";
export const MIN_CREDENTIAL_LENGTH = 32;

/**
 * SERVICE_CREDENTIAL, checked: at least 32 characters, and required in production. Without one
 * in development the protected RPCs refuse every caller (nobody can hold a credential that does
 * not exist), so a forgotten setting fails closed.
 */
export function readServiceCredential(e: EnvReader): string | undefined {
  const credential = e.optional("SERVICE_CREDENTIAL");
  const production = e.string("NODE_ENV", "development") === "production";
  const hint = "(e.g. `openssl rand -hex 32`; npm start makes one per data directory)";
  if (credential === undefined) {
    if (production) e.problems.push(`SERVICE_CREDENTIAL is required in production ${hint}`);
  } else if (credential.length < MIN_CREDENTIAL_LENGTH) {
    e.problems.push(
      `SERVICE_CREDENTIAL must be at least ${MIN_CREDENTIAL_LENGTH} characters, got ${credential.length} ${hint}`,
    );
  }
  return credential;
}

const digest = (value: string) => createHash("sha256").update(value).digest();

/**
 * Refuses every call of a service not listed as open unless it carries the credential: the
 * comparison runs on SHA-256 digests in constant time, so neither timing nor length tells an
 * attacker how close a guess was. Refusals are logged (never the header's value).
 */
export function requireServiceCredential(
  credential: string | undefined,
  open: readonly DescService[],
  logger: Logger,
): Interceptor {
  const expected = credential === undefined ? undefined : digest(credential);
  const openServices = new Set(open.map((s) => s.typeName));
  return (next) => async (req) => {
    if (openServices.has(req.service.typeName)) return next(req);
    const given = req.header.get(CREDENTIAL_HEADER);
    if (expected !== undefined && given !== null && timingSafeEqual(digest(given), expected)) return next(req);
    logger.warn(
      {
        procedure: `${req.service.typeName}/${req.method.name}`,
        credential: given === null ? "missing" : "wrong",
        userAgent: req.header.get("user-agent") ?? undefined,
      },
      "refused a call without the service credential",
    );
    throw rpcError(ErrorReason.SERVICE_CREDENTIAL_REQUIRED, "this call needs the store's service credential");
  };
}

/** For the store's own clients: every call carries the credential. */
export function sendServiceCredential(credential: string): Interceptor {
  return (next) => (req) => {
    req.header.set(CREDENTIAL_HEADER, credential);
    return next(req);
  };
}
