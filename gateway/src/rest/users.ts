import { LoginRequestSchema, RegisterRequestSchema, UpdateMeRequestSchema } from "@merch/gen/merch/shop/v1/shop_pb";
import { authOf, type Handlers, type RestContext, requestInfo } from "../context.ts";
import { fromRestJson, userJson } from "../convert.ts";

export function userRoutes(ctx: RestContext): Handlers {
  return {
    async registerUser(req, reply) {
      const user = await ctx.store.register(requestInfo(req), fromRestJson(RegisterRequestSchema, req.body));
      req.userId = user.id;
      return reply.code(201).header("location", "/users/me").send(userJson(user));
    },

    async loginUser(req, reply) {
      const { login, password } = fromRestJson(LoginRequestSchema, req.body);
      if (login.case === undefined) throw new Error("validation lets no login through without a name");
      // The answer carries a token: no cache may keep it.
      reply.header("cache-control", "no-store");
      const { token, expiresIn, user } = await ctx.store.login(requestInfo(req), login, password);
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
      return userJson(await ctx.store.updateMe(authOf(req), fromRestJson(UpdateMeRequestSchema, req.body)));
    },

    async deactivateCurrentUser(req, reply) {
      await ctx.store.deactivateMe(authOf(req));
      return reply.code(204).send();
    },
  };
}
