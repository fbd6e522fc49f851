import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "@merch/gen/google/rpc/error_details_pb";

/** The domain of every ErrorInfo our services attach. */
export const ERROR_DOMAIN = "store.merch.sustech";

export interface FieldViolation {
  field: string;
  message: string;
}

/**
 * An error with a stable machine-readable reason (google.rpc.ErrorInfo), and for invalid input
 * the field violations (google.rpc.BadRequest). The reason is what the gateway turns into the
 * problem+json `code`.
 */
export function rpcError(
  code: Code,
  reason: string,
  message: string,
  violations: readonly FieldViolation[] = [],
): ConnectError {
  const info = { desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason, domain: ERROR_DOMAIN }) };
  if (violations.length === 0) return new ConnectError(message, code, undefined, [info]);
  const badRequest = {
    desc: BadRequestSchema,
    value: create(BadRequestSchema, {
      fieldViolations: violations.map((v) => ({ field: v.field, description: v.message })),
    }),
  };
  return new ConnectError(message, code, undefined, [info, badRequest]);
}

export function invalidArgument(violations: readonly FieldViolation[]): ConnectError {
  const message = violations.map((v) => `${v.field}: ${v.message}`).join("; ");
  return rpcError(Code.InvalidArgument, "validation_failed", message, violations);
}

/** The reason of an error built by rpcError, or undefined. */
export function reasonOf(err: ConnectError): string | undefined {
  return err.findDetails(ErrorInfoSchema).find((d) => d.domain === ERROR_DOMAIN)?.reason;
}

export function violationsOf(err: ConnectError): FieldViolation[] {
  return err
    .findDetails(BadRequestSchema)
    .flatMap((b) => b.fieldViolations.map((v) => ({ field: v.field, message: v.description })));
}
