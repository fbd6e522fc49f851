import { ConnectError } from "@connectrpc/connect";
import { reasonOf } from "@merch/kit/errors";
import { tokenRefused } from "../auth.ts";
import { currentUserId, eventFor, type GatewayContext, type Handlers } from "../context.ts";
import { userJson } from "../convert.ts";
import { LoginLimiter } from "../login-limiter.ts";
import { ProblemError, problem } from "../problems.ts";
import { issueToken, TOKEN_LIFETIME_S } from "../tokens.ts";

interface RegisterBody {
  sid: string;
  username: string;
  email: string;
  password: string;
}
type LoginBody = { password: string } & ({ username: string; sid?: never } | { sid: string; username?: never });
interface UpdateBody {
  username?: string;
  email?: string;
  password?: string;
  current_password?: string;
}

export function userRoutes(ctx: GatewayContext): Handlers {
  return {
    async registerUser(req, reply) {
      const body = req.body as RegisterBody;
      const { user } = await ctx.db.users.registerUser(body);
      ctx.events.emit(
        eventFor(req, { level: "info", event: "user.registered", message: "account created", userId: user?.id }),
      );
      return reply.code(201).header("location", "/users/me").send(userJson(user));
    },

    async loginUser(req) {
      const body = req.body as LoginBody;
      const login =
        body.username !== undefined
          ? ({ case: "username", value: body.username } as const)
          : ({ case: "sid", value: body.sid } as const);
      const key = LoginLimiter.key(`${login.case}:${login.value}`, req.ip);
      const wait = ctx.limiter.retryAfter(key);
      if (wait > 0) {
        ctx.events.emit(
          eventFor(req, {
            level: "warn",
            event: "user.login_throttled",
            message: "login refused after repeated failures",
            attributes: { login_type: login.case },
          }),
        );
        throw new ProblemError(problem(429, "too_many_attempts", `too many failed logins; retry in ${wait} seconds`), {
          "retry-after": String(wait),
        });
      }
      try {
        const { user } = await ctx.db.users.authenticateUser({ login, password: body.password });
        ctx.limiter.recordSuccess(key);
        const token = await issueToken(ctx.tokens, user?.id ?? 0);
        ctx.events.emit(
          eventFor(req, {
            level: "info",
            event: "user.login_succeeded",
            message: "logged in",
            userId: user?.id,
            attributes: { login_type: login.case },
          }),
        );
        return { token, token_type: "Bearer", expires_in: TOKEN_LIFETIME_S, user: userJson(user) };
      } catch (err) {
        const reason = err instanceof ConnectError ? reasonOf(err) : undefined;
        if (reason === "invalid_credentials" || reason === "account_deactivated") {
          if (reason === "invalid_credentials") ctx.limiter.recordFailure(key);
          ctx.events.emit(
            eventFor(req, {
              level: "warn",
              event: "user.login_failed",
              message: "login failed",
              attributes: { login_type: login.case, reason },
            }),
          );
        }
        throw err;
      }
    },

    async getCurrentUser(req) {
      const { user } = await ctx.db.users.getUser({ userId: currentUserId(req) });
      // A deactivated account's token no longer works, here as on every route (see auth.ts).
      if (!user?.isActive) throw tokenRefused(ctx, req, "account_deactivated", "the account is deactivated");
      return userJson(user);
    },

    async updateCurrentUser(req) {
      const body = req.body as UpdateBody;
      const { user } = await ctx.db.users.updateUser({
        userId: currentUserId(req),
        ...(body.username === undefined ? {} : { username: body.username }),
        ...(body.email === undefined ? {} : { email: body.email }),
        ...(body.password === undefined ? {} : { password: body.password }),
        ...(body.current_password === undefined ? {} : { currentPassword: body.current_password }),
      });
      const fields = ["username", "email", "password"].filter((f) => f in body);
      ctx.events.emit(
        eventFor(req, {
          level: "info",
          event: "user.updated",
          message: "profile updated",
          attributes: { fields: fields.join(",") },
        }),
      );
      return userJson(user);
    },

    async deactivateCurrentUser(req, reply) {
      await ctx.db.users.deactivateUser({ userId: currentUserId(req) });
      ctx.events.emit(eventFor(req, { level: "info", event: "user.deactivated", message: "account deactivated" }));
      return reply.code(204).send();
    },
  };
}
