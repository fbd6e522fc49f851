import { ConnectError } from "@connectrpc/connect";
import { ANSWERS, ErrorReason, type Reason, reasonName, reasonOf, retryAfterOf, violationsOf } from "@merch/kit";
import type { FastifyError, FastifyReply } from "fastify";
import { publicError } from "./refusals.ts";

// Every error the REST API answers is RFC 9457 problem details whose `code` is the refusal's
// reason; its status comes from the one table of reasons (kit/src/reasons.ts).

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

export interface Answer {
  problem: Problem;
  headers: Record<string, string>;
}

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  413: "Content Too Large",
  414: "URI Too Long",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

const REALM = 'Bearer realm="sustech-merch-store"';

/** The REST names of fields whose protobuf names differ. */
const REST_FIELD: Record<string, string> = {
  page_token: "cursor",
  page_size: "limit",
  order_id: "id",
  idempotency_key: "Idempotency-Key",
};

export function problem(reason: Reason, detail: string, extra: Partial<Problem> = {}): Problem {
  const status = ANSWERS[reason].status;
  const code = reasonName(reason);
  return { type: `urn:problem:merch:${code}`, title: TITLES[status] ?? "Error", status, detail, code, ...extra };
}

/** The answer to a refusal, with the headers its status calls for. */
function answerFor(err: ConnectError): Answer {
  const reason = reasonOf(err) ?? ErrorReason.INTERNAL;
  const headers: Record<string, string> = {};
  const p = problem(reason, err.rawMessage);
  const violations = violationsOf(err);
  if (violations.length > 0) {
    p.errors = violations.map((v) => ({ field: REST_FIELD[v.field] ?? v.field, message: v.message }));
    p.detail = p.errors.map((e) => `${e.field}: ${e.message}`).join("; ");
  }
  const retryAfter = retryAfterOf(err);
  if (retryAfter !== undefined) {
    headers["retry-after"] = String(retryAfter);
    p.detail = `${p.detail}; retry in ${retryAfter} seconds`;
  }
  const challenge = challengeFor(reason);
  if (challenge !== undefined) headers["www-authenticate"] = challenge;
  return { problem: p, headers };
}

/** The WWW-Authenticate challenge a refused token calls for, on every door (RFC 6750). */
export function challengeFor(reason: Reason): string | undefined {
  if (reason === ErrorReason.AUTHENTICATION_REQUIRED) return REALM;
  if (reason === ErrorReason.INVALID_TOKEN) return `${REALM}, error="invalid_token"`;
  return undefined;
}

export function sendProblem(reply: FastifyReply, answer: Answer): FastifyReply {
  return reply
    .code(answer.problem.status)
    .headers(answer.headers)
    .type("application/problem+json")
    .send(answer.problem);
}

export const BODY_LIMIT = 64 * 1024;

/** Fastify's own refusals, by error code. */
const FASTIFY_ERRORS: Record<string, [Reason, string]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: [ErrorReason.PAYLOAD_TOO_LARGE, `request bodies are limited to ${BODY_LIMIT} bytes`],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [ErrorReason.UNSUPPORTED_MEDIA_TYPE, "send the body as application/json"],
  FST_ERR_CTP_EMPTY_JSON_BODY: [ErrorReason.MALFORMED_JSON, "the JSON body is empty"],
  FST_ERR_CTP_INVALID_JSON_BODY: [ErrorReason.MALFORMED_JSON, "the body is not valid JSON"],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [ErrorReason.MALFORMED_JSON, "the body does not match its Content-Length"],
  FST_ERR_BAD_URL: [ErrorReason.BAD_REQUEST, "the request path is not a valid URL path"],
  // No id or name in a path comes near Fastify's 100-character parameter limit.
  FST_ERR_MAX_PARAM_LENGTH: [ErrorReason.URI_TOO_LONG, "a path parameter is longer than any valid one"],
  FST_ERR_ASYNC_CONSTRAINT: [ErrorReason.BAD_REQUEST, "the request is malformed"],
  // @fastify/static's refusal of a path out of its folder (/docs/static/%2e%2e/…): there is no such file.
  FST_STATIC_FORBIDDEN_PATH: [ErrorReason.NOT_FOUND, "no such file"],
};

/** Any other client error a plugin raises, by its status: a client's mistake is never a 500. */
const CLIENT_STATUS: Record<number, Reason> = {
  403: ErrorReason.NOT_FOUND,
  404: ErrorReason.NOT_FOUND,
  405: ErrorReason.METHOD_NOT_ALLOWED,
  408: ErrorReason.REQUEST_TIMEOUT,
  413: ErrorReason.PAYLOAD_TOO_LARGE,
  414: ErrorReason.URI_TOO_LONG,
  415: ErrorReason.UNSUPPORTED_MEDIA_TYPE,
  431: ErrorReason.HEADERS_TOO_LARGE,
};

/** Node's refusals of a request it could not even parse (Fastify's clientErrorHandler), by code. */
export const CLIENT_ERRORS: Record<string, [Reason, string]> = {
  HPE_HEADER_OVERFLOW: [ErrorReason.HEADERS_TOO_LARGE, "the request headers are too large"],
  ERR_HTTP_REQUEST_TIMEOUT: [ErrorReason.REQUEST_TIMEOUT, "the request did not arrive in time"],
  ERR_HTTP_HEADERS_TIMEOUT: [ErrorReason.REQUEST_TIMEOUT, "the request headers did not arrive in time"],
};

/** The answer to anything a route or hook threw. */
export function answerForError(err: FastifyError | ConnectError | Error): Answer {
  if (err instanceof ConnectError) return answerFor(publicError(err, false));
  const fastify = err as FastifyError;
  const known = FASTIFY_ERRORS[fastify.code];
  if (known) return { problem: problem(known[0], known[1]), headers: {} };
  // JSON.parse's errors, including forbidden __proto__ keys, reach us as plain 400s.
  if (err instanceof SyntaxError || (fastify.statusCode === 400 && /JSON|prototype|constructor/i.test(err.message))) {
    return { problem: problem(ErrorReason.MALFORMED_JSON, "the body is not valid JSON"), headers: {} };
  }
  const status = fastify.statusCode ?? 500;
  if (status >= 400 && status < 500) {
    const reason = CLIENT_STATUS[status] ?? ErrorReason.BAD_REQUEST;
    return {
      problem: problem(reason, reason === ErrorReason.NOT_FOUND ? "no such resource" : err.message),
      headers: {},
    };
  }
  return { problem: problem(ErrorReason.INTERNAL, "internal error"), headers: {} };
}
