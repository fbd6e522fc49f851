import type { User } from "@merch/gen/merch/store/v1/user_pb";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { DbClients, LogClients } from "./clients.ts";
import type { GatewayConfig } from "./config.ts";
import type { EventInput, EventLog } from "./event-log.ts";
import type { LoginLimiter } from "./login-limiter.ts";
import type { TokenSettings } from "./tokens.ts";

declare module "fastify" {
  interface FastifyRequest {
    /** Set by the authentication hook on routes that need a token. */
    user?: User;
  }
}

/** What route handlers work with. */
export interface GatewayContext {
  config: GatewayConfig;
  db: DbClients;
  log: LogClients;
  events: EventLog;
  tokens: TokenSettings;
  limiter: LoginLimiter;
  specText: string;
}

export type Handler = (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
export type Handlers = Record<string, Handler>;

/** The authenticated user of a route that requires a token. */
export function currentUser(req: FastifyRequest): User {
  if (!req.user) throw new Error("route reached without authentication");
  return req.user;
}

/** An event about this request, with its id and user filled in. */
export function eventFor(req: FastifyRequest, input: Omit<EventInput, "requestId" | "userId"> & { userId?: number }) {
  return { ...input, requestId: req.id, userId: input.userId ?? req.user?.id };
}
