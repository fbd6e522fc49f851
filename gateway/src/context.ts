import type { FastifyReply, FastifyRequest } from "fastify";
import type { Authenticated, RequestInfo, Store } from "./store.ts";

declare module "fastify" {
  interface FastifyRequest {
    /** The verified token's caller, set by the authentication hook on routes that need a token. */
    auth?: Authenticated;
    /** The account the request acted for, when known: for its log event. */
    userId?: number;
  }
}

/** What the REST handlers work with. */
export interface RestContext {
  store: Store;
  specText: string;
  /** The Prometheus text of GET /metrics. */
  metrics(): Promise<string>;
  /** Product pages as ready-made JSON, for the hottest reads. */
  productJson: { list(): Promise<string>; get(id: number): Promise<string | undefined> };
}

export type Handler = (req: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
export type Handlers = Record<string, Handler>;

export function requestInfo(req: FastifyRequest): RequestInfo {
  return { requestId: req.id, clientAddress: req.ip };
}

/** The caller of a route that requires a token. */
export function authOf(req: FastifyRequest): Authenticated {
  if (req.auth === undefined) throw new Error("route reached without authentication");
  return req.auth;
}
