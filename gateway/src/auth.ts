import type { FastifyRequest } from "fastify";
import { eventFor, type GatewayContext } from "./context.ts";
import { ProblemError, problem } from "./problems.ts";

const REALM = 'Bearer realm="sustech-merch-store"';
const BEARER = /^Bearer[ ]+([A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*)[ ]*$/i;

/** db-service's reasons that mean the token's account can no longer act. */
export const ACCOUNT_GONE = new Set(["account_deactivated", "user_not_found"]);

/** A 401 with its challenge, and an auth.failed event saying why (never the token). */
export function tokenRefused(
  ctx: GatewayContext,
  req: FastifyRequest,
  reason: string,
  detail: string,
  code: "authentication_required" | "invalid_token" = "invalid_token",
): ProblemError {
  ctx.events.emit(
    eventFor(req, {
      level: "warn",
      event: "auth.failed",
      message: `authentication failed: ${reason}`,
      attributes: { reason, route: req.routeOptions.url ?? "" },
    }),
  );
  const challenge = code === "invalid_token" ? `${REALM}, error="invalid_token"` : REALM;
  return new ProblemError(problem(401, code, detail), { "www-authenticate": challenge });
}

/**
 * The onRequest hook of every route that needs a token: signature, algorithm and claims. That
 * the account still exists and is active is checked by db-service in the same call that does
 * the route's work (every user and order RPC refuses a deactivated account), so deactivation
 * takes effect at once without a second round trip per request; the error handler turns that
 * refusal into this same 401.
 */
export function authenticate(ctx: GatewayContext) {
  return async (req: FastifyRequest): Promise<void> => {
    const header = req.headers.authorization;
    if (header === undefined) {
      throw tokenRefused(ctx, req, "missing_token", "a Bearer token is required", "authentication_required");
    }
    const match = BEARER.exec(header);
    if (!match?.[1]) throw tokenRefused(ctx, req, "malformed_header", "the Authorization header is not a Bearer token");
    const check = await ctx.verifier.verify(match[1]);
    if (!check.ok) throw tokenRefused(ctx, req, check.reason, "the token is invalid or expired");
    req.userId = check.userId;
  };
}
