import { create, createRegistry, toBinary } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { createValidator, type Validator } from "@bufbuild/protovalidate";
import { RE2JS } from "@bufbuild/re2";
import { type Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import { ViolationsSchema } from "@merch/gen/buf/validate/validate_pb";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "@merch/gen/google/rpc/error_details_pb";
import { file_merch_common_v1_rules } from "@merch/gen/merch/common/v1/rules_pb";
import { ANSWERS, ErrorReason, type Reason, reasonByName, reasonName } from "./reasons.ts";

/** The domain of every ErrorInfo our services attach. */
export const ERROR_DOMAIN = "store.merch.sustech";

export interface FieldViolation {
  field: string;
  message: string;
}

export interface RefusalDetails {
  violations?: readonly FieldViolation[];
  /** When to try again, for throttling: a google.rpc.RetryInfo. */
  retryAfterS?: number;
}

/**
 * A refusal: the Connect code of its reason (kit/src/reasons.ts), a google.rpc.ErrorInfo with the
 * reason's name, and where they apply the field violations (google.rpc.BadRequest) and when to
 * retry (google.rpc.RetryInfo).
 */
export function rpcError(reason: Reason, message: string, details: RefusalDetails = {}): ConnectError {
  const attached = [
    { desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason: reasonName(reason), domain: ERROR_DOMAIN }) },
  ];
  const { violations = [], retryAfterS } = details;
  const extra = [
    ...(violations.length === 0
      ? []
      : [
          {
            desc: BadRequestSchema,
            value: create(BadRequestSchema, {
              fieldViolations: violations.map((v) => ({ field: v.field, description: v.message })),
            }),
          },
        ]),
    ...(retryAfterS === undefined
      ? []
      : [
          { desc: RetryInfoSchema, value: create(RetryInfoSchema, { retryDelay: durationFromMs(retryAfterS * 1000) }) },
        ]),
  ];
  return new ConnectError(message, ANSWERS[reason].code, undefined, [...attached, ...extra]);
}

export function invalidArgument(violations: readonly FieldViolation[]): ConnectError {
  const message = violations.map((v) => `${v.field}: ${v.message}`).join("; ");
  return rpcError(ErrorReason.VALIDATION_FAILED, message, { violations });
}

/** The reason of an error built by rpcError, or undefined. */
export function reasonOf(err: ConnectError): Reason | undefined {
  const name = err.findDetails(ErrorInfoSchema).find((d) => d.domain === ERROR_DOMAIN)?.reason;
  return name === undefined ? undefined : reasonByName(name);
}

export function violationsOf(err: ConnectError): FieldViolation[] {
  return err
    .findDetails(BadRequestSchema)
    .flatMap((b) => b.fieldViolations.map((v) => ({ field: v.field, message: v.description })));
}

/** Seconds until a throttled caller may try again, from the error's RetryInfo. */
export function retryAfterOf(err: ConnectError): number | undefined {
  const delay = err.findDetails(RetryInfoSchema)[0]?.retryDelay;
  return delay === undefined ? undefined : Math.max(1, Math.ceil(Number(delay.seconds) + delay.nanos / 1e9));
}

/**
 * protovalidate's refusal (INVALID_ARGUMENT with buf.validate.Violations) as ours, so every
 * caller reads field errors one way. A rule about a whole message names its field in its id.
 */
export function fromValidationError(err: ConnectError): ConnectError | undefined {
  const [violations] = err.findDetails(ViolationsSchema);
  if (violations === undefined) return undefined;
  return invalidArgument(
    violations.violations.map((v) => {
      const path = (v.field?.elements ?? []).map((e) => e.fieldName).join(".");
      return { field: path === "" ? v.ruleId : path, message: v.message };
    }),
  );
}

/**
 * A protovalidate validator that knows the store's named rules (merch/common/v1/rules.proto):
 * without them it refuses to compile any message that uses one.
 */
export function storeValidator(): Validator {
  return createValidator({ registry: createRegistry(file_merch_common_v1_rules), regexMatch: storeRegexMatch });
}

/**
 * A whole string of one class of printable ASCII characters, a bounded number of times
 * (`^[A-Za-z0-9_.-]{3,50}$`), written without `[`, `\\`, `]` or `^` inside the class (no escape,
 * negation or POSIX class to read differently): the platform's RegExp reads it as RE2 does (only
 * ASCII can match, so UTF-16 units and code points count alike) and matches it in linear time
 * (one class, nothing to backtrack into).
 */
const ONE_ASCII_CLASS = /^\^\[[ -Z_-~]+\]\{\d+,\d+\}\$$/;
const patterns = new Map<string, RegExp | RE2JS>();

/**
 * protovalidate's `matches()`, as its default (RE2) but for the patterns of ONE_ASCII_CLASS,
 * which the platform's RegExp matches many times faster: an idempotency key is checked on every
 * order, and RE2 in JavaScript was db-service's costliest regex.
 */
export function storeRegexMatch(pattern: string, against: string): boolean {
  let re = patterns.get(pattern);
  if (re === undefined) {
    re = ONE_ASCII_CLASS.test(pattern) ? new RegExp(pattern) : RE2JS.compile(pattern);
    // The store's rules are a fixed set; a pattern made from input would not be kept.
    if (patterns.size < 256) patterns.set(pattern, re);
  }
  return re.test(against);
}

/**
 * The field rules of the protos (buf.validate), checked before a handler runs, with refusals in
 * the form every other refusal has: bad input never reaches a handler, nor the database.
 */
export function validation(): Interceptor[] {
  const ours: Interceptor = (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      throw (err instanceof ConnectError && fromValidationError(err)) || err;
    }
  };
  return [ours, createValidateInterceptor({ validator: storeValidator() })];
}

/** A ConnectError as data, for an answer that carries one refusal per item (PlaceOrders). */
export interface CarriedRefusal {
  code: number;
  message: string;
  /** Each detail as Connect carries it: the message's full name and its binary encoding. */
  details: { type: string; value: Uint8Array }[];
}

/** The refusal a batched answer carries for one item: what the single call would have thrown. */
export function carryRefusal(err: ConnectError): CarriedRefusal {
  return {
    code: err.code,
    message: err.rawMessage,
    details: err.details.map((d) =>
      "desc" in d
        ? { type: d.desc.typeName, value: toBinary(d.desc, create(d.desc, d.value)) }
        : { type: d.type, value: d.value },
    ),
  };
}

/** The ConnectError a batched answer carried for one item, as the single call would have thrown it. */
export function refusalError(refusal: CarriedRefusal): ConnectError {
  const err = new ConnectError(refusal.message, refusal.code as Code);
  err.details = refusal.details.map((d) => ({ type: d.type, value: d.value }));
  return err;
}
