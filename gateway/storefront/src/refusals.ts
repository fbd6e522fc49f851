import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "@merch/gen/google/rpc/error_details_pb";

// Refusals in words. Every ShopService refusal carries a google.rpc.ErrorInfo whose reason is the
// REST API's problem `code` (kit/src/reasons.ts); the page says what it means for the person at
// the keyboard, not what the protocol calls it.

const DOMAIN = "store.merch.sustech";

export interface Refusal {
  /** The ErrorInfo reason ("insufficient_stock"), or undefined when none came (a network failure). */
  reason: string | undefined;
  code: Code;
  /** The server's own message, for reasons this page has no sentence for. */
  message: string;
  violations: { field: string; description: string }[];
  /** From google.rpc.RetryInfo, for throttling. */
  retryAfterS: number | undefined;
}

export function refusalOf(err: unknown): Refusal {
  const ce = ConnectError.from(err);
  const info = ce.findDetails(ErrorInfoSchema).find((d) => d.domain === DOMAIN);
  const delay = ce.findDetails(RetryInfoSchema)[0]?.retryDelay;
  return {
    reason: info?.reason,
    code: ce.code,
    message: ce.rawMessage,
    violations: ce.findDetails(BadRequestSchema).flatMap((b) => b.fieldViolations),
    retryAfterS: delay === undefined ? undefined : Math.max(1, Math.ceil(Number(delay.seconds) + delay.nanos / 1e9)),
  };
}

/** The labels the forms show, for field errors. */
const FIELD_LABELS: Record<string, string> = {
  sid: "Student ID",
  username: "Username",
  email: "Email",
  password: "Password",
  quantity: "Quantity",
};

const SENTENCES: Record<string, string> = {
  invalid_credentials: "Wrong username or password.",
  account_deactivated: "This account has been deactivated.",
  too_many_registrations: "Too many accounts were created from this address. Please try again later.",
  sid_taken: "That student ID is already registered.",
  username_taken: "That username is already taken.",
  email_taken: "That email address is already registered.",
  authentication_required: "Please log in first.",
  invalid_token: "Your session has ended. Please log in again.",
  insufficient_stock: "Not enough stock for that order.",
  product_not_found: "That product is no longer in the store.",
  order_not_found: "That order was not found.",
  idempotency_key_reused: "That order request was already used for a different order.",
  outcome_unknown:
    "The store could not confirm whether that went through. Your orders below show what happened; check them before trying again.",
  upstream_timeout: "The store took too long to answer. Please try again.",
  service_unavailable: "The store is unavailable right now. Nothing was changed; please try again shortly.",
  database_unavailable: "The store is unavailable right now. Nothing was changed; please try again shortly.",
  not_ready: "The store is starting up. Please try again shortly.",
  shutting_down: "The store is restarting. Please try again shortly.",
  payload_too_large: "That request was too large.",
};

/** A sentence for a refusal; `override` gives sentences of the caller's own for some reasons. */
export function inWords(refusal: Refusal, override: Partial<Record<string, string>> = {}): string {
  const reason = refusal.reason;
  if (reason === undefined) {
    // No ErrorInfo: the answer never came from the store (a dropped connection, a timeout here).
    if (refusal.code === Code.DeadlineExceeded) return "The store took too long to answer. Please try again.";
    return "Could not reach the store. Check your connection and try again.";
  }
  const own = override[reason];
  if (own !== undefined) return own;
  if (reason === "too_many_attempts") {
    const wait = refusal.retryAfterS;
    return wait === undefined
      ? "Too many failed logins. Please wait before trying again."
      : `Too many failed logins. Please try again in ${waitInWords(wait)}.`;
  }
  if (reason === "validation_failed" && refusal.violations.length > 0) {
    const fields = refusal.violations.map((v) => `${FIELD_LABELS[v.field] ?? v.field} ${v.description}`);
    return `Please check: ${fields.join("; ")}.`;
  }
  return SENTENCES[reason] ?? `The store refused: ${refusal.message}.`;
}

function waitInWords(seconds: number): string {
  if (seconds < 90) return `${seconds} seconds`;
  const minutes = Math.ceil(seconds / 60);
  return `${minutes} minutes`;
}
