import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { type Handlers, requestInfo } from "../context.ts";
import { type OpenApiDocument, routeSpecs } from "../spec.ts";
import type { Store } from "../store.ts";

// REST routes from openapi.yaml: each handler finds its operation by operationId, and gets
// the operation's path, request schemas and token check from the spec. A plugin registers the
// handlers of its part of the API (rest/*.ts, health.ts); everyOperationRouted checks, once all
// are in, that no operation was left without one.

export interface RestRoutesOptions {
  spec: OpenApiDocument;
  /** Handlers by operationId. */
  handlers: Handlers;
  /** The token check of operations that need one (tokenCheck); needed only when one of `handlers` does. */
  authenticate?: (req: FastifyRequest, reply: FastifyReply) => Promise<void>;
}

export const restRoutes: FastifyPluginAsync<RestRoutesOptions> = async (app, { spec, handlers, authenticate }) => {
  const operations = new Map(routeSpecs(spec).map((route) => [route.operationId, route]));
  for (const [operationId, handler] of Object.entries(handlers)) {
    const route = operations.get(operationId);
    if (!route) throw new Error(`handler ${operationId} has no openapi.yaml operation`);
    if (route.requiresToken && !authenticate) throw new Error(`${operationId} needs a token, and nothing checks it`);
    app.route({
      method: route.method,
      url: route.url,
      schema: route.schema,
      ...(route.requiresToken ? { onRequest: authenticate } : {}),
      ...(route.method !== "GET" && !route.hasBody ? { preValidation: refuseBody } : {}),
      handler,
    });
  }
};

/** Throws when an operation of the spec has no route, once every plugin is registered. */
export function everyOperationRouted(app: FastifyInstance, spec: OpenApiDocument): void {
  const missing = routeSpecs(spec).filter((route) => !app.hasRoute({ method: route.method, url: route.url }));
  if (missing.length > 0) {
    throw new Error(`openapi.yaml operations without a handler: ${missing.map((r) => r.operationId).join(", ")}`);
  }
}

/** The onRequest hook of every REST route that needs a token: the same check as ShopService's. */
export function tokenCheck(store: Store) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    // Answers for a signed-in user are theirs alone: no cache may keep them.
    reply.header("cache-control", "no-store");
    req.auth = await store.authenticate(requestInfo(req), req.headers.authorization);
  };
}

/** Routes without a request body in the contract refuse one, as they refuse unknown fields. */
async function refuseBody(req: FastifyRequest): Promise<void> {
  const body = req.body;
  const empty =
    body === undefined || body === null || (typeof body === "object" && Object.keys(body as object).length === 0);
  if (!empty) {
    throw Object.assign(new Error("this request takes no body"), {
      validation: [{ keyword: "empty", instancePath: "", schemaPath: "", params: {}, message: "must be empty" }],
      validationContext: "body",
    });
  }
}
