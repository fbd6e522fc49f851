import { authOf, type Handlers, type RestContext, requestInfo } from "../context.ts";
import { userJson } from "../convert.ts";
import type { LoginName } from "../store.ts";

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

export function userRoutes(ctx: RestContext): Handlers {
  return {
    async registerUser(req, reply) {
      const user = await ctx.store.register(requestInfo(req), req.body as RegisterBody);
      req.userId = user.id;
      return reply.code(201).header("location", "/users/me").send(userJson(user));
    },

    async loginUser(req, reply) {
      const body = req.body as LoginBody;
      const login: LoginName =
        body.username !== undefined ? { case: "username", value: body.username } : { case: "sid", value: body.sid };
      // The answer carries a token: no cache may keep it.
      reply.header("cache-control", "no-store");
      const { token, expiresIn, user } = await ctx.store.login(requestInfo(req), login, body.password);
      req.userId = user.id;
      return { token, token_type: "Bearer", expires_in: expiresIn, user: userJson(user) };
    },

    async logoutUser(_req, reply) {
      await ctx.store.logout(authOf(_req));
      return reply.code(204).send();
    },

    async getCurrentUser(req) {
      return userJson(await ctx.store.me(authOf(req)));
    },

    async updateCurrentUser(req) {
      const body = req.body as UpdateBody;
      return userJson(
        await ctx.store.updateMe(authOf(req), {
          username: body.username,
          email: body.email,
          password: body.password,
          currentPassword: body.current_password,
        }),
      );
    },

    async deactivateCurrentUser(req, reply) {
      await ctx.store.deactivateMe(authOf(req));
      return reply.code(204).send();
    },
  };
}
