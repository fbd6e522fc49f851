import { createHash, timingSafeEqual } from "node:crypto";
import type { DescService } from "@bufbuild/protobuf";
import { createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
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

/** The address a call came from (the serving adapter's contextValues puts it there). */
export const kPeerAddress = createContextKey<string>("", { description: "caller's address" });

/** How often refused calls are summed up in the log, and how many are logged in full meanwhile. */
export interface RefusalLogLimits {
  intervalMs: number;
  /** Distinct (address, procedure, kind) refusals logged in full per interval; the rest are counted. */
  detailed: number;
}

/**
 * Refused calls, logged at a bounded rate: the first refusal of each caller address, procedure
 * and kind in an interval is logged in full, every other one only counted, and each interval
 * with refusals ends in one line with the counts by address. 6,000 refused calls cost a handful
 * of lines, and still name who made them.
 */
export class RefusalLog {
  private readonly seen = new Set<string>();
  private readonly byAddress = new Map<string, number>();
  private total = 0;
  private timer: NodeJS.Timeout | undefined;

  private readonly logger: Logger;
  private readonly limits: RefusalLogLimits;

  constructor(logger: Logger, limits: RefusalLogLimits = { intervalMs: 60_000, detailed: 50 }) {
    this.logger = logger;
    this.limits = limits;
  }

  refused(address: string, procedure: string, credential: "missing" | "wrong", userAgent: string | undefined): void {
    this.total++;
    this.byAddress.set(address, (this.byAddress.get(address) ?? 0) + 1);
    const key = `${address}\u0000${procedure}\u0000${credential}`;
    if (!this.seen.has(key) && this.seen.size < this.limits.detailed) {
      this.seen.add(key);
      this.logger.warn({ address, procedure, credential, userAgent }, "refused a call without the service credential");
    }
    if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), this.limits.intervalMs);
      this.timer.unref();
    }
  }

  /** Logs the interval's counts and starts a new interval. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.total === 0) return;
    const top = [...this.byAddress].sort((a, b) => b[1] - a[1]).slice(0, 20);
    this.logger.warn(
      {
        refused: this.total,
        intervalS: this.limits.intervalMs / 1000,
        addresses: this.byAddress.size,
        byAddress: Object.fromEntries(top),
      },
      "refused calls without the service credential",
    );
    this.total = 0;
    this.byAddress.clear();
    this.seen.clear();
  }
}

/**
 * The request gate of a service: every call of a service not listed as open needs the
 * credential, checked from the headers before a byte of the body is read (a stranger's body is
 * never buffered or parsed). The comparison runs on SHA-256 digests in constant time, so neither
 * timing nor length tells an attacker how close a guess was. Refusals are logged at a bounded
 * rate, with the caller's address (never the header's value).
 */
export function serviceCredentialGate(
  credential: string | undefined,
  open: readonly DescService[],
  refusals: RefusalLog,
): (ctx: HandlerContext) => void {
  const expected = credential === undefined ? undefined : digest(credential);
  const openServices = new Set(open.map((s) => s.typeName));
  return (ctx) => {
    if (openServices.has(ctx.service.typeName)) return;
    const given = ctx.requestHeader.get(CREDENTIAL_HEADER);
    if (expected !== undefined && given !== null && timingSafeEqual(digest(given), expected)) return;
    refusals.refused(
      ctx.values.get(kPeerAddress),
      `${ctx.service.typeName}/${ctx.method.name}`,
      given === null ? "missing" : "wrong",
      ctx.requestHeader.get("user-agent") ?? undefined,
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
