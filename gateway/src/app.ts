import { createHash, randomUUID } from "node:crypto";
import { IncomingMessage, ServerResponse } from "node:http";
import { Socket } from "node:net";
import { Code, ConnectError, cors as connectCors, createContextValues } from "@connectrpc/connect";
import { fastifyConnectPlugin } from "@connectrpc/connect-fastify";
import fastifyCors from "@fastify/cors";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import { HealthCheckResponse_ServingStatus as Status } from "@merch/gen/grpc/health/v1/health_pb";
import type { Logger } from "@merch/kit";
import { ErrorReason, reasonName, rpcError } from "@merch/kit";
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyRequest,
  LogController,
} from "fastify";
import helmet, { type HelmetOptions } from "helmet";
import { type Downstream, dbClients, logClients, networkDownstream } from "./clients.ts";
import type { GatewayConfig } from "./config.ts";
import type { Handlers, RestContext } from "./context.ts";
import { requestInfo } from "./context.ts";
import { EventLog } from "./event-log.ts";
import { GatewayMetrics, observeRequests } from "./observe.ts";
import { answerForError, BODY_LIMIT, CLIENT_ERRORS, type FieldError, problem, sendProblem } from "./problems.ts";
import { ProductCache } from "./product-cache.ts";
import { orderRoutes } from "./rest/orders.ts";
import { productRoutes } from "./rest/products.ts";
import { staffRoutes } from "./rest/staff.ts";
import { systemRoutes } from "./rest/system.ts";
import { userRoutes } from "./rest/users.ts";
import { kRequest, ShopService, shopRoutes } from "./shop.ts";
import { loadSpec, loadSpecText, routeSpecs } from "./spec.ts";
import { StaffDesk } from "./staff.ts";
import { Store } from "./store.ts";
import { storefrontRoutes } from "./storefront.ts";
import { TokenVerifier } from "./tokens.ts";
import { fieldErrors, validatorCompiler } from "./validation.ts";

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;
/** Longer paths are refused with 414 before routing: no route of ours comes close. */
const MAX_PATH = 2048;
const SHOP_PREFIX = `/${ShopService.typeName}/`;

export interface Gateway {
  app: FastifyInstance;
  /** Stops taking requests, lets those in flight finish for up to SHUTDOWN_GRACE_MS, then ends. */
  close(): Promise<void>;
}

/**
 * The gateway: REST routes from openapi.yaml and ShopService on one Fastify server, both adapters
 * of one Store. `downstream` defaults to the real services over the network; tests may pass
 * in-memory transports (createRouterTransport).
 */
export async function buildGateway(
  config: GatewayConfig,
  logger: Logger,
  downstream: Downstream = networkDownstream(config),
): Promise<Gateway> {
  const specText = loadSpecText();
  const spec = loadSpec(specText);
  const db = dbClients(downstream.db);
  const log = logClients(downstream.log);
  const events = new EventLog(log.logs, logger, { maxEvents: config.logQueueMax });
  const tokens = { secret: config.jwtSecret, issuer: config.jwtIssuer, audience: config.jwtAudience };
  const products = new ProductCache(db, config.productCacheTtlMs, logger);
  products.start();
  const store = new Store({
    db,
    events,
    tokens,
    verifier: new TokenVerifier(tokens),
    products,
    // Derived, so that no second secret has to be configured, and never equal to the signing key.
    auditKey: createHash("sha256").update("merch-store login-name audit\u0000").update(config.jwtSecret).digest(),
  });

  let closing = false;
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // Every request becomes a log-service event instead (onResponse below), so requests get the
    // service's logger itself rather than a child logger each: one allocation less per request.
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: (parent) => parent,
    bodyLimit: BODY_LIMIT,
    // A hop count trusts that many proxies nearest to the gateway, never the client's own entries.
    trustProxy:
      typeof config.trustProxy === "number"
        ? (_address: string, hop: number) => hop < (config.trustProxy as number)
        : config.trustProxy,
    requestTimeout: config.http.requestTimeoutMs,
    // Node checks those timeouts only this often (30 s by default): a slow client is cut within a
    // second of its deadline instead.
    http: { connectionsCheckingInterval: 1000, headersTimeout: config.http.headersTimeoutMs },
    connectionTimeout: config.http.connectionTimeoutMs,
    keepAliveTimeout: config.http.keepAliveTimeoutMs,
    // Our own 503 answers the requests that arrive while closing (onRequest below).
    return503OnClosing: false,
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
    },
    // A JSON body may not smuggle prototypes in.
    onProtoPoisoning: "error",
    onConstructorPoisoning: "error",
    // Requests Node could not even parse (oversized headers, a request line that is not HTTP, a
    // request that took too long to arrive) are answered as problem details too.
    clientErrorHandler: (err, socket) => answerClientError(err, socket, events),
  });
  app.server.maxConnections = config.http.maxConnections;
  const metrics = new GatewayMetrics(
    () => events.stats(),
    () => products.following,
    () => downstream.dbCallsWaiting?.() ?? 0,
  );
  // First of all hooks: the request's span is the context everything after it runs in.
  observeRequests(app, metrics);

  app.setValidatorCompiler(validatorCompiler());
  // JSON is the only body the REST API takes; anything else is 415, not a string to validate.
  // (connect-fastify brings its own parsers for its routes.)
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "string" }, app.getDefaultJsonParser("error", "error"));
  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err.validation) {
      const errors: FieldError[] = fieldErrors(
        err.validation as Parameters<typeof fieldErrors>[0],
        err.validationContext,
      );
      const detail = errors.map((e) => `${e.field}: ${e.message}`).join("; ");
      return sendProblem(reply, { problem: problem(ErrorReason.VALIDATION_FAILED, detail, { errors }), headers: {} });
    }
    const answer = answerForError(err);
    if (answer.problem.status >= 500) req.log.error({ err, requestId: req.id }, "request failed");
    return sendProblem(reply, answer);
  });
  app.setNotFoundHandler((req, reply) =>
    sendProblem(reply, {
      problem: problem(ErrorReason.NOT_FOUND, `no route for ${req.method} ${req.url.split("?")[0]}`),
      headers: {},
    }),
  );

  // helmet's headers, worked out once: @fastify/helmet ran helmet's middleware on every request
  // (3 % of the gateway's CPU on an order, 5 % on ShopService; bench/results.md).
  const securityHeaders = helmetHeaders({
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        // swagger-ui sets element styles from its scripts.
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", "data:"],
        connectSrc: ["'self'"],
        objectSrc: ["'none'"],
        frameAncestors: ["'none'"],
        baseUri: ["'self'"],
        formAction: ["'self'"],
        // The gateway speaks plain HTTP: upgrading its pages' requests to https breaks them for
        // every browser not on localhost (/docs loaded no script or style).
        upgradeInsecureRequests: null,
      },
    },
    // The API is called from other origins when CORS_ORIGINS allows it.
    crossOriginResourcePolicy: { policy: "cross-origin" },
  });
  app.addHook("onRequest", async (_req, reply) => {
    reply.headers(securityHeaders);
  });
  if (config.corsOrigins.length > 0) {
    await app.register(fastifyCors, {
      origin: config.corsOrigins.includes("*") ? true : config.corsOrigins,
      methods: [...new Set([...connectCors.allowedMethods, "GET", "POST", "PATCH"])],
      allowedHeaders: [...connectCors.allowedHeaders, "Authorization", "Idempotency-Key", "X-Request-Id"],
      exposedHeaders: [
        ...connectCors.exposedHeaders,
        "Location",
        "Retry-After",
        "X-Request-Id",
        "Idempotent-Replayed",
        "WWW-Authenticate",
      ],
      maxAge: 7200,
      // Preflights answer 204, for REST and Connect alike.
      optionsSuccessStatus: 204,
      strictPreflight: false,
    });
  }

  app.addHook("onRequest", async (req, reply) => {
    reply.header("x-request-id", req.id);
    if (closing) {
      reply.header("connection", "close");
      throw rpcError(ErrorReason.SHUTTING_DOWN, "the gateway is shutting down; retry on another replica or shortly");
    }
    if ((req.url.split("?")[0] ?? "").length > MAX_PATH) {
      return sendProblem(reply, {
        problem: problem(ErrorReason.URI_TOO_LONG, `request paths are limited to ${MAX_PATH} characters`),
        headers: {},
      });
    }
    if (req.url.startsWith(SHOP_PREFIX)) reply.header("cache-control", "no-store");
  });
  // One event per answered request, sent in the background.
  app.addHook("onResponse", async (req, reply) => {
    events.emit({
      level: reply.statusCode >= 500 ? "error" : reply.statusCode >= 400 ? "warn" : "info",
      event: "http.request",
      message: `${req.method} ${req.routeOptions.url ?? "(no route)"} ${reply.statusCode}`,
      requestId: req.id,
      userId: req.userId ?? req.auth?.subject.userId,
      http: {
        method: req.method,
        path: req.url.split("?")[0] ?? "/",
        status: reply.statusCode,
        durationMs: reply.elapsedTime,
      },
    });
  });

  await app.register(swagger, { mode: "static", specification: { document: spec as never } });
  // No staticCSP: swagger-ui's own policy has no 'unsafe-inline' for the <style> its script adds
  // (a CSP violation in every browser); the gateway's policy above allows it.
  await app.register(swaggerUi, { routePrefix: "/docs", uiConfig: { deepLinking: true } });
  storefrontRoutes(app);

  const staff = new StaffDesk({ db, events, products });
  const shop = shopRoutes(store, staff);
  // In a scope of its own: connect-fastify brings its own body parsers (JSON and binary protobuf)
  // for its routes, where the REST routes take JSON only.
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    await scope.register(fastifyConnectPlugin, {
      routes: shop.routes,
      interceptors: shop.interceptors,
      contextValues: (req: FastifyRequest) => createContextValues().set(kRequest, req),
      shutdownTimeoutMs: config.shutdownGraceMs,
    });
  });

  const ctx: RestContext = {
    store,
    specText,
    metrics: () => metrics.text(),
    eventStats: () => events.stats(),
    productJson: { list: () => products.listJson(), get: (id) => products.getJson(id) },
    async readiness() {
      const check = async (client: typeof db.health) => {
        try {
          const { status } = await client.check({ service: "" }, { timeoutMs: 1000 });
          return status === Status.SERVING ? "SERVING" : "NOT_SERVING";
        } catch (err) {
          return err instanceof ConnectError && err.code === Code.NotFound ? "NOT_SERVING" : "UNREACHABLE";
        }
      };
      const [dbState, logState] = await Promise.all([check(db.health), check(log.health)]);
      return {
        ready: dbState === "SERVING" && logState === "SERVING",
        checks: { db_service: dbState, log_service: logState },
      };
    },
  };
  const handlers: Handlers = {
    ...systemRoutes(ctx),
    ...productRoutes(ctx),
    ...userRoutes(ctx),
    ...orderRoutes(ctx),
    ...staffRoutes(staff),
  };
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
      ...(route.requiresToken ? { onRequest: authenticate(store) } : {}),
      ...(route.method !== "GET" && !route.hasBody ? { preValidation: refuseBody } : {}),
      handler,
    });
  }
  const orphans = Object.keys(handlers).filter((id) => !served.has(id));
  if (orphans.length > 0) throw new Error(`handlers without an openapi.yaml operation: ${orphans.join(", ")}`);

  return {
    app,
    async close() {
      closing = true;
      // Requests in flight may finish within the grace period; then their connections are cut.
      const cut = setTimeout(() => app.server.closeAllConnections(), config.shutdownGraceMs);
      try {
        await app.close();
      } finally {
        clearTimeout(cut);
      }
      await products.close();
      await events.close(3000);
      downstream.close();
    },
  };
}

/** The onRequest hook of every REST route that needs a token: the same check as ShopService's. */
function authenticate(store: Store) {
  return async (req: FastifyRequest, reply: { header(name: string, value: string): unknown }): Promise<void> => {
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

/**
 * Answers a request Node could not parse, straight on the socket (there is no request object),
 * as problem details, and logs it like any other answer.
 */
function answerClientError(err: Error & { code?: string }, socket: Socket, events: EventLog): void {
  const [reason, detail] = CLIENT_ERRORS[err.code ?? ""] ?? [ErrorReason.BAD_REQUEST, "the request is not valid HTTP"];
  const p = problem(reason, detail);
  if (socket.writable) {
    const body = JSON.stringify(p);
    socket.end(
      // No hook runs for these answers: helmet's nosniff is written here by hand.
      `HTTP/1.1 ${p.status} ${p.title}\r\nContent-Type: application/problem+json\r\nX-Content-Type-Options: nosniff\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  } else {
    socket.destroy();
  }
  events.emit({
    level: "warn",
    event: "http.request",
    message: `unparsable request ${p.status} (${reasonName(reason)})`,
    http: { method: "UNKNOWN", path: "-", status: p.status, durationMs: 0 },
  });
}

/** The headers helmet sets with these options, taken from one run of its middleware. */
function helmetHeaders(options: HelmetOptions): Record<string, string> {
  const req = new IncomingMessage(new Socket());
  const res = new ServerResponse(req);
  let failed: unknown;
  helmet(options)(req, res, (err?: unknown) => {
    failed = err;
  });
  if (failed) throw failed;
  return Object.fromEntries(
    Object.entries(res.getHeaders()).map(([name, value]) => [
      name,
      Array.isArray(value) ? value.join(", ") : String(value),
    ]),
  );
}
