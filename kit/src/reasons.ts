import { Code } from "@connectrpc/connect";
import { ErrorReason, ErrorReasonSchema } from "@merch/gen/merch/common/v1/error_reason_pb";

export { ErrorReason };

/** Every reason but UNSPECIFIED: what a refusal can be. */
export type Reason = Exclude<(typeof ErrorReason)[keyof typeof ErrorReason], typeof ErrorReason.UNSPECIFIED>;

export interface Answer {
  /** The Connect code an RPC answers with. */
  code: Code;
  /** The HTTP status the REST API answers with. */
  status: number;
  /** Only internal services give it: the public APIs never answer with it as it is. */
  internal?: true;
}

/**
 * The one table from a refusal's reason to how each API answers it. The reason's name is the
 * REST `code` and the ErrorInfo reason (see error_reason.proto); TypeScript makes the table list
 * every reason the proto declares.
 */
export const ANSWERS: Readonly<Record<Reason, Answer>> = {
  [ErrorReason.VALIDATION_FAILED]: { code: Code.InvalidArgument, status: 400 },
  [ErrorReason.MALFORMED_JSON]: { code: Code.InvalidArgument, status: 400 },
  [ErrorReason.UNSUPPORTED_MEDIA_TYPE]: { code: Code.InvalidArgument, status: 415 },
  [ErrorReason.PAYLOAD_TOO_LARGE]: { code: Code.ResourceExhausted, status: 413 },
  [ErrorReason.URI_TOO_LONG]: { code: Code.InvalidArgument, status: 414 },
  [ErrorReason.HEADERS_TOO_LARGE]: { code: Code.InvalidArgument, status: 431 },
  [ErrorReason.BAD_REQUEST]: { code: Code.InvalidArgument, status: 400 },
  [ErrorReason.REQUEST_TIMEOUT]: { code: Code.DeadlineExceeded, status: 408 },
  [ErrorReason.NOT_FOUND]: { code: Code.NotFound, status: 404 },
  [ErrorReason.METHOD_NOT_ALLOWED]: { code: Code.Unimplemented, status: 405 },
  [ErrorReason.AUTHENTICATION_REQUIRED]: { code: Code.Unauthenticated, status: 401 },
  [ErrorReason.INVALID_TOKEN]: { code: Code.Unauthenticated, status: 401 },
  [ErrorReason.INVALID_CREDENTIALS]: { code: Code.Unauthenticated, status: 401 },
  [ErrorReason.ACCOUNT_DEACTIVATED]: { code: Code.PermissionDenied, status: 403 },
  [ErrorReason.WRONG_CURRENT_PASSWORD]: { code: Code.PermissionDenied, status: 403 },
  [ErrorReason.TOO_MANY_ATTEMPTS]: { code: Code.ResourceExhausted, status: 429 },
  [ErrorReason.TOO_MANY_REGISTRATIONS]: { code: Code.ResourceExhausted, status: 429 },
  [ErrorReason.SERVICE_CREDENTIAL_REQUIRED]: { code: Code.Unauthenticated, status: 401, internal: true },
  [ErrorReason.PRODUCT_NOT_FOUND]: { code: Code.NotFound, status: 404 },
  [ErrorReason.ORDER_NOT_FOUND]: { code: Code.NotFound, status: 404 },
  [ErrorReason.USER_NOT_FOUND]: { code: Code.NotFound, status: 404, internal: true },
  [ErrorReason.SID_TAKEN]: { code: Code.AlreadyExists, status: 409 },
  [ErrorReason.USERNAME_TAKEN]: { code: Code.AlreadyExists, status: 409 },
  [ErrorReason.EMAIL_TAKEN]: { code: Code.AlreadyExists, status: 409 },
  [ErrorReason.INSUFFICIENT_STOCK]: { code: Code.FailedPrecondition, status: 409 },
  [ErrorReason.IDEMPOTENCY_KEY_REUSED]: { code: Code.FailedPrecondition, status: 422 },
  [ErrorReason.CONFLICT]: { code: Code.Aborted, status: 409 },
  [ErrorReason.DATABASE_UNAVAILABLE]: { code: Code.Unavailable, status: 503 },
  [ErrorReason.SERVICE_UNAVAILABLE]: { code: Code.Unavailable, status: 503 },
  [ErrorReason.UPSTREAM_TIMEOUT]: { code: Code.DeadlineExceeded, status: 504 },
  [ErrorReason.OUTCOME_UNKNOWN]: { code: Code.DeadlineExceeded, status: 504 },
  [ErrorReason.NOT_READY]: { code: Code.Unavailable, status: 503 },
  [ErrorReason.SHUTTING_DOWN]: { code: Code.Unavailable, status: 503 },
  [ErrorReason.LOG_BUFFER_FULL]: { code: Code.ResourceExhausted, status: 503, internal: true },
  [ErrorReason.INTERNAL]: { code: Code.Internal, status: 500 },
  [ErrorReason.STAFF_ONLY]: { code: Code.PermissionDenied, status: 403 },
  [ErrorReason.INVALID_TRANSITION]: { code: Code.FailedPrecondition, status: 409 },
  [ErrorReason.PRODUCT_NAME_TAKEN]: { code: Code.AlreadyExists, status: 409 },
  [ErrorReason.USERNAME_NOT_FOUND]: { code: Code.NotFound, status: 404, internal: true },
};

/**
 * The reason for an error that came without one: a transport failure, or a peer that is not
 * ours. What a read answers; a write whose answer was lost is outcome_unknown instead (the
 * caller decides, it knows which it sent).
 */
export const REASON_OF_CODE: Readonly<Record<Code, Reason>> = {
  [Code.Canceled]: ErrorReason.SERVICE_UNAVAILABLE,
  [Code.Unknown]: ErrorReason.INTERNAL,
  [Code.InvalidArgument]: ErrorReason.VALIDATION_FAILED,
  [Code.DeadlineExceeded]: ErrorReason.UPSTREAM_TIMEOUT,
  [Code.NotFound]: ErrorReason.NOT_FOUND,
  [Code.AlreadyExists]: ErrorReason.CONFLICT,
  [Code.PermissionDenied]: ErrorReason.INTERNAL,
  [Code.ResourceExhausted]: ErrorReason.SERVICE_UNAVAILABLE,
  [Code.FailedPrecondition]: ErrorReason.CONFLICT,
  // A reset connection: nobody knows what the peer did.
  [Code.Aborted]: ErrorReason.SERVICE_UNAVAILABLE,
  [Code.OutOfRange]: ErrorReason.VALIDATION_FAILED,
  [Code.Unimplemented]: ErrorReason.INTERNAL,
  [Code.Internal]: ErrorReason.INTERNAL,
  [Code.Unavailable]: ErrorReason.SERVICE_UNAVAILABLE,
  [Code.DataLoss]: ErrorReason.INTERNAL,
  // Our services always say why; a bare UNAUTHENTICATED means the service credential was refused.
  [Code.Unauthenticated]: ErrorReason.INTERNAL,
};

const PREFIX = "ERROR_REASON_";
const NAMES = new Map<number, string>();
const BY_NAME = new Map<string, Reason>();
for (const value of ErrorReasonSchema.values) {
  if (value.number === ErrorReason.UNSPECIFIED) continue;
  const name = value.name.slice(PREFIX.length).toLowerCase();
  NAMES.set(value.number, name);
  BY_NAME.set(name, value.number as Reason);
}

/** "insufficient_stock" for ErrorReason.INSUFFICIENT_STOCK: the REST code and ErrorInfo reason. */
export function reasonName(reason: Reason): string {
  return NAMES.get(reason) ?? "internal";
}

export function reasonByName(name: string): Reason | undefined {
  return BY_NAME.get(name);
}
