import type { FastifyReply, FastifyRequest } from "fastify";
import type { DbClients, LogClients } from "./clients.ts";
import type { GatewayConfig } from "./config.ts";
import type { EventInput, EventLog } from "./event-log.ts";
import type { LoginLimiter } from "./login-limiter.ts";
import type { ProductCache } from "./product-cache.ts";
import type { TokenSettings, TokenVerifier } from "./tokens.ts";

declare module "fastify" {
  interface FastifyRequest {
    /** The token's user, set by the authentication hook on routes that need a token. */
    userId?: number;
  }
}

/** What route handlers work with. */
export interface GatewayContext {
  config: GatewayConfig;
  db: DbClients;
  log: LogClients;
  events: EventLog;
  tokens: TokenSettings;
  verifier: TokenVerifier;
  limiter: LoginLimiter;
  products: ProductCache;
  specText: string;
}

export type Handler = (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
export type Handlers = Record<string, Handler>;

/** The token's user id on a route that requires a token. */
export function currentUserId(req: FastifyRequest): number {
  if (req.userId === undefined) throw new Error("route reached without authentication");
  return req.userId;
}

/** An event about this request, with its id and user filled in. */
export function eventFor(req: FastifyRequest, input: Omit<EventInput, "requestId" | "userId"> & { userId?: number }) {
  return { ...input, requestId: req.id, userId: input.userId ?? req.userId };
}
