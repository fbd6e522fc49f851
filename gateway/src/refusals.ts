import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorReason, REASON_OF_CODE, type Reason, reasonOf, rpcError } from "@merch/kit";

// What a client is told when a call to db-service or log-service failed: always one of the
// store's public reasons (kit/src/reasons.ts), with what the internal service said kept when it
// is for the client's eyes.

/** Internal reasons, as the public APIs answer them. */
const PUBLIC_FOR: Partial<Record<Reason, Reason>> = {
  // The token's account is gone (a reset database): the token is no good any more.
  [ErrorReason.USER_NOT_FOUND]: ErrorReason.INVALID_TOKEN,
  // The gateway's own credential was refused: its configuration is wrong, not the client's request.
  [ErrorReason.SERVICE_CREDENTIAL_REQUIRED]: ErrorReason.INTERNAL,
  [ErrorReason.LOG_BUFFER_FULL]: ErrorReason.SERVICE_UNAVAILABLE,
};

const MESSAGES: Partial<Record<Reason, string>> = {
  [ErrorReason.SERVICE_UNAVAILABLE]: "an internal service is unavailable; nothing was changed, retry later",
  [ErrorReason.UPSTREAM_TIMEOUT]: "an internal service did not answer in time; retry later",
  [ErrorReason.INTERNAL]: "internal error",
  [ErrorReason.INVALID_TOKEN]: "the token is invalid or expired",
  [ErrorReason.OUTCOME_UNKNOWN]:
    "the store lost touch with the database while the change was being made: it may or may not have happened; " +
    "repeat the request with the same Idempotency-Key to find out",
};

/** A connection that was never made: the request did not reach the service. */
const NEVER_SENT = /ECONNREFUSED|EHOSTUNREACH|ENOTFOUND|REFUSED_STREAM/;

/**
 * The public error for a failed call. A refusal with a reason is the internal service's own
 * verdict and is passed on (internal reasons translated). A failure without one happened on the
 * way: a read is simply unavailable, but a write whose request may have arrived has an unknown
 * outcome, and the client is told so, never that it failed.
 */
export function publicError(err: unknown, write: boolean): ConnectError {
  const ce = ConnectError.from(err);
  const reason = reasonOf(ce);
  if (reason !== undefined) {
    const mapped = PUBLIC_FOR[reason];
    if (mapped === undefined) return ce;
    return rpcError(mapped, MESSAGES[mapped] ?? ce.rawMessage);
  }
  const sent = !NEVER_SENT.test(ce.rawMessage) && !NEVER_SENT.test(String(ce.cause));
  const mapped: Reason =
    write && sent && ce.code !== Code.InvalidArgument ? ErrorReason.OUTCOME_UNKNOWN : REASON_OF_CODE[ce.code];
  return rpcError(mapped, MESSAGES[mapped] ?? "internal error");
}
