import { Code, ConnectError } from "@connectrpc/connect";
import { reasonOf } from "@merch/kit/errors";
import type { FastifyRequest } from "fastify";
import { eventFor, type GatewayContext } from "./context.ts";
import { ProblemError, problem } from "./problems.ts";
import { verifyToken } from "./tokens.ts";

const REALM = 'Bearer realm="sustech-merch-store"';
const BEARER = /^Bearer[ ]+([A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*)[ ]*$/i;

function unauthorized(code: "authentication_required" | "invalid_token", detail: string): ProblemError {
  const challenge = code === "invalid_token" ? `${REALM}, error="invalid_token"` : REALM;
  return new ProblemError(problem(401, code, detail), { "www-authenticate": challenge });
}

/**
 * The onRequest hook of every route that needs a token: a valid signature and claims, and an
 * account that still exists and is active, asked of db-service on every request so that
 * deactivation takes effect at once.
 */
export function authenticate(ctx: GatewayContext) {
  return async (req: FastifyRequest): Promise<void> => {
    const header = req.headers.authorization;
    const fail = (code: "authentication_required" | "invalid_token", reason: string, detail: string) => {
      ctx.events.emit(
        eventFor(req, {
          level: "warn",
          event: "auth.failed",
          message: `authentication failed: ${reason}`,
          attributes: { reason, route: req.routeOptions.url ?? "" },
        }),
      );
      return unauthorized(code, detail);
    };
    if (header === undefined) throw fail("authentication_required", "missing_token", "a Bearer token is required");
    const match = BEARER.exec(header);
    if (!match?.[1]) throw fail("invalid_token", "malformed_header", "the Authorization header is not a Bearer token");
    const check = await verifyToken(ctx.tokens, match[1]);
    if (!check.ok) throw fail("invalid_token", check.reason, "the token is invalid or expired");
    let user: Awaited<ReturnType<typeof ctx.db.users.getUser>>["user"];
    try {
      ({ user } = await ctx.db.users.getUser({ userId: check.userId }));
    } catch (err) {
      if (err instanceof ConnectError && err.code === Code.NotFound && reasonOf(err) === "user_not_found") {
        throw fail("invalid_token", "unknown_user", "the token is invalid or expired");
      }
      throw err;
    }
    if (!user?.isActive) throw fail("invalid_token", "account_deactivated", "the account is deactivated");
    req.user = user;
  };
}
