import { Code, ConnectError } from "@connectrpc/connect";
import { reasonOf } from "@merch/kit/errors";
import type { FastifyReply } from "fastify";

// Every error the gateway answers is RFC 9457 problem details with a stable `code`.

export interface FieldError {
  field: string;
  message: string;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  errors?: FieldError[];
  [extension: string]: unknown;
}

export class ProblemError extends Error {
  readonly problem: Problem;
  readonly headers: Record<string, string>;
  constructor(problem: Problem, headers: Record<string, string> = {}) {
    super(problem.detail);
    this.problem = problem;
    this.headers = headers;
  }
}

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  429: "Too Many Requests",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

export function problem(status: number, code: string, detail: string, extra: Partial<Problem> = {}): Problem {
  return {
    type: `urn:problem:merch:${code}`,
    title: TITLES[status] ?? "Error",
    status,
    detail,
    code,
    ...extra,
  };
}

// The one table from an internal service's answer to the HTTP answer. A reason listed here
// decides alone; otherwise the gRPC code's standard HTTP mapping applies.
const BY_REASON: Record<string, { status: number; code: string }> = {
  validation_failed: { status: 400, code: "validation_failed" },
  product_not_found: { status: 404, code: "product_not_found" },
  order_not_found: { status: 404, code: "order_not_found" },
  // The account behind a valid token is gone: the token is no good any more.
  user_not_found: { status: 401, code: "invalid_token" },
  invalid_credentials: { status: 401, code: "invalid_credentials" },
  account_deactivated: { status: 403, code: "account_deactivated" },
  wrong_current_password: { status: 403, code: "wrong_current_password" },
  sid_taken: { status: 409, code: "sid_taken" },
  username_taken: { status: 409, code: "username_taken" },
  email_taken: { status: 409, code: "email_taken" },
  insufficient_stock: { status: 409, code: "insufficient_stock" },
  concurrent_update: { status: 409, code: "conflict" },
  transaction_conflict: { status: 409, code: "conflict" },
  idempotency_key_reused: { status: 422, code: "idempotency_key_reused" },
  database_unavailable: { status: 503, code: "service_unavailable" },
  database_timeout: { status: 504, code: "upstream_timeout" },
};

const BY_CODE: Record<Code, { status: number; code: string }> = {
  [Code.Canceled]: { status: 503, code: "service_unavailable" },
  [Code.Unknown]: { status: 500, code: "internal" },
  [Code.InvalidArgument]: { status: 400, code: "validation_failed" },
  [Code.DeadlineExceeded]: { status: 504, code: "upstream_timeout" },
  [Code.NotFound]: { status: 404, code: "not_found" },
  [Code.AlreadyExists]: { status: 409, code: "conflict" },
  [Code.PermissionDenied]: { status: 403, code: "forbidden" },
  [Code.ResourceExhausted]: { status: 503, code: "service_unavailable" },
  [Code.FailedPrecondition]: { status: 409, code: "conflict" },
  [Code.Aborted]: { status: 409, code: "conflict" },
  [Code.OutOfRange]: { status: 400, code: "validation_failed" },
  [Code.Unimplemented]: { status: 500, code: "internal" },
  [Code.Internal]: { status: 500, code: "internal" },
  [Code.Unavailable]: { status: 503, code: "service_unavailable" },
  [Code.DataLoss]: { status: 500, code: "internal" },
  [Code.Unauthenticated]: { status: 401, code: "invalid_credentials" },
};

/** What a client sees for an error from db-service. Internal details never leak. */
export function problemFromRpc(err: ConnectError): Problem {
  const reason = reasonOf(err);
  const mapped = (reason !== undefined ? BY_REASON[reason] : undefined) ?? BY_CODE[err.code];
  const detail =
    mapped.status >= 500
      ? mapped.code === "upstream_timeout"
        ? "an internal service did not answer in time; retry later"
        : mapped.status === 503
          ? "an internal service is unavailable; retry later"
          : "internal error"
      : err.rawMessage;
  return problem(mapped.status, mapped.code, detail);
}

export function sendProblem(reply: FastifyReply, p: Problem, headers: Record<string, string> = {}): FastifyReply {
  return reply.code(p.status).headers(headers).type("application/problem+json").send(p);
}

export function isConnectError(err: unknown): err is ConnectError {
  return err instanceof ConnectError;
}
