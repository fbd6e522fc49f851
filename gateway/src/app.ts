import { randomUUID } from "node:crypto";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import { reasonOf, violationsOf } from "@merch/kit/errors";
import type { Logger } from "@merch/kit/logger";
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from "fastify";
import { ACCOUNT_GONE, authenticate, tokenRefused } from "./auth.ts";
import { dbClients, logClients } from "./clients.ts";
import type { GatewayConfig } from "./config.ts";
import type { GatewayContext, Handlers } from "./context.ts";
import { EventLog } from "./event-log.ts";
import { LoginLimiter } from "./login-limiter.ts";
import {
  type FieldError,
  isConnectError,
  type Problem,
  ProblemError,
  problem,
  problemFromRpc,
  sendProblem,
} from "./problems.ts";
import { ProductCache } from "./product-cache.ts";
import { orderRoutes } from "./routes/orders.ts";
import { productRoutes } from "./routes/products.ts";
import { systemRoutes } from "./routes/system.ts";
import { userRoutes } from "./routes/users.ts";
import { loadSpec, loadSpecText, routeSpecs } from "./spec.ts";
import { TokenVerifier } from "./tokens.ts";
import { fieldErrors, validatorCompiler } from "./validation.ts";

export const BODY_LIMIT = 64 * 1024;
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

// db-service names fields as in protobuf; clients know them by their REST names.
const REST_FIELD: Record<string, string> = {
  page_token: "cursor",
  page_size: "limit",
  order_id: "id",
  idempotency_key: "Idempotency-Key",
  current_password: "current_password",
};

export interface Gateway {
  app: FastifyInstance;
  ctx: GatewayContext;
  close(): Promise<void>;
}

export async function buildGateway(config: GatewayConfig, logger: Logger): Promise<Gateway> {
  const specText = loadSpecText();
  const spec = loadSpec(specText);
  const log = logClients(config.logServiceUrl);
  const tokens = { secret: config.jwtSecret, issuer: config.jwtIssuer, audience: config.jwtAudience };
  const db = dbClients(config.dbServiceUrl, config.dbTransport, config.rpcTimeoutMs);
  const ctx: GatewayContext = {
    config,
    db,
    log,
    events: new EventLog(log.logs, logger, { maxEvents: config.logQueueMax }),
    tokens,
    verifier: new TokenVerifier(tokens),
    limiter: new LoginLimiter({ maxFailures: config.loginMaxFailures, windowS: config.loginWindowS }),
    products: new ProductCache(db, config.productCacheTtlMs),
    specText,
  };

  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // Every request becomes a log-service event instead (onResponse below), so requests get the
    // service's logger itself rather than a child logger each: one allocation less per request.
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: (parent) => parent,
    bodyLimit: BODY_LIMIT,
    trustProxy: config.trustProxy,
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
    },
    // A JSON body may not smuggle prototypes in.
    onProtoPoisoning: "error",
    onConstructorPoisoning: "error",
  });
  app.setValidatorCompiler(validatorCompiler());
  // JSON is the only body the API takes; anything else is 415, not a string to validate.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "string" }, app.getDefaultJsonParser("error", "error"));
  app.setErrorHandler((err: FastifyError, req, reply) => answerError(ctx, err, req, reply));
  app.setNotFoundHandler((req, reply) =>
    sendProblem(reply, problem(404, "not_found", `no route for ${req.method} ${req.url.split("?")[0]}`)),
  );

  app.addHook("onRequest", async (req, reply) => {
    reply.header("x-request-id", req.id);
    if (config.corsOrigins.length > 0) cors(config.corsOrigins, req, reply);
  });
  // One event per answered request, sent in the background.
  app.addHook("onResponse", async (req, reply) => {
    ctx.events.emit({
      level: reply.statusCode >= 500 ? "error" : reply.statusCode >= 400 ? "warn" : "info",
      event: "http.request",
      message: `${req.method} ${req.routeOptions.url ?? "(no route)"} ${reply.statusCode}`,
      requestId: req.id,
      userId: req.userId,
      http: {
        method: req.method,
        path: req.url.split("?")[0] ?? "/",
        status: reply.statusCode,
        durationMs: reply.elapsedTime,
      },
    });
  });

  await app.register(swagger, { mode: "static", specification: { document: spec as never } });
  await app.register(swaggerUi, { routePrefix: "/docs", uiConfig: { deepLinking: true } });

  const handlers: Handlers = {
    ...systemRoutes(ctx),
    ...productRoutes(ctx),
    ...userRoutes(ctx),
    ...orderRoutes(ctx),
  };
  const auth = authenticate(ctx);
  const served = new Set<string>(["getDocs"]); // @fastify/swagger-ui serves /docs
  for (const route of routeSpecs(spec)) {
    if (route.operationId === "getDocs") continue;
    const handler = handlers[route.operationId];
    if (!handler) throw new Error(`openapi.yaml operation ${route.operationId} has no handler`);
    served.add(route.operationId);
    app.route({
      method: route.method,
      url: route.url,
      schema: route.schema,
      ...(route.requiresToken ? { onRequest: auth } : {}),
      ...(route.method !== "GET" && !route.hasBody ? { preValidation: refuseBody } : {}),
      handler,
    });
  }
  const orphans = Object.keys(handlers).filter((id) => !served.has(id));
  if (orphans.length > 0) throw new Error(`handlers without an openapi.yaml operation: ${orphans.join(", ")}`);

  return {
    app,
    ctx,
    async close() {
      await app.close();
      await ctx.events.close(3000);
      ctx.db.close();
      ctx.log.close();
    },
  };
}

/** Routes without a request body in the contract refuse one, as they refuse unknown fields. */
async function refuseBody(req: FastifyRequest): Promise<void> {
  const body = req.body;
  const empty =
    body === undefined || body === null || (typeof body === "object" && Object.keys(body as object).length === 0);
  if (!empty) {
    throw new ProblemError(
      problem(400, "validation_failed", "this request takes no body", {
        errors: [{ field: "body", message: "must be empty" }],
      }),
    );
  }
}

function cors(origins: readonly string[], req: FastifyRequest, reply: FastifyReply): void {
  const origin = req.headers.origin;
  if (typeof origin !== "string" || !(origins.includes("*") || origins.includes(origin))) return;
  reply.header("access-control-allow-origin", origins.includes("*") ? "*" : origin);
  reply.header("vary", "Origin");
  reply.header("access-control-expose-headers", "Location, Retry-After, X-Request-Id, Idempotent-Replayed");
  if (req.method === "OPTIONS") {
    reply.header("access-control-allow-methods", "GET, POST, PATCH");
    reply.header("access-control-allow-headers", "Authorization, Content-Type, Idempotency-Key, X-Request-Id");
    reply.header("access-control-max-age", "7200");
  }
}

const FASTIFY_ERRORS: Record<string, (err: FastifyError) => Problem> = {
  FST_ERR_CTP_BODY_TOO_LARGE: () =>
    problem(413, "payload_too_large", `request bodies are limited to ${BODY_LIMIT} bytes`),
  FST_ERR_CTP_INVALID_MEDIA_TYPE: () => problem(415, "unsupported_media_type", "send the body as application/json"),
  FST_ERR_CTP_EMPTY_JSON_BODY: () => problem(400, "malformed_json", "the JSON body is empty"),
  FST_ERR_CTP_INVALID_JSON_BODY: () => problem(400, "malformed_json", "the body is not valid JSON"),
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: () =>
    problem(400, "malformed_json", "the body does not match its Content-Length"),
};

function answerError(ctx: GatewayContext, err: FastifyError, req: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (err instanceof ProblemError) return sendProblem(reply, err.problem, err.headers);
  if (isConnectError(err)) {
    const reason = reasonOf(err);
    if (req.userId !== undefined && reason !== undefined && ACCOUNT_GONE.has(reason)) {
      const p = tokenRefused(ctx, req, reason, "the token's account is deactivated or gone");
      return sendProblem(reply, p.problem, p.headers);
    }
    const p = problemFromRpc(err);
    if (p.code === "validation_failed") {
      const errors: FieldError[] = violationsOf(err).map((v) => ({
        field: REST_FIELD[v.field] ?? v.field,
        message: v.message,
      }));
      if (errors.length > 0) {
        p.errors = errors;
        p.detail = errors.map((e) => `${e.field}: ${e.message}`).join("; ");
      }
    }
    if (p.status >= 500) req.log.error({ err, code: p.code, requestId: req.id }, "internal service call failed");
    return sendProblem(reply, p);
  }
  if (err.validation) {
    const errors = fieldErrors(err.validation as Parameters<typeof fieldErrors>[0], err.validationContext);
    return sendProblem(
      reply,
      problem(400, "validation_failed", errors.map((e) => `${e.field}: ${e.message}`).join("; "), { errors }),
    );
  }
  const known = FASTIFY_ERRORS[err.code];
  if (known) return sendProblem(reply, known(err));
  // JSON.parse's errors, including forbidden __proto__ keys, reach us as plain 400s.
  if (err instanceof SyntaxError || (err.statusCode === 400 && /JSON|prototype|constructor/i.test(err.message))) {
    return sendProblem(reply, problem(400, "malformed_json", "the body is not valid JSON"));
  }
  req.log.error({ err, requestId: req.id }, "unhandled error");
  return sendProblem(reply, problem(500, "internal", "internal error"));
}
