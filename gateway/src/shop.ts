import { create, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import {
  ConnectError,
  type ConnectRouter,
  createContextKey,
  type HandlerContext,
  type Interceptor,
  type ServiceImpl,
} from "@connectrpc/connect";
import { OrderSchema, ProductSchema, ShopService, UserSchema } from "@merch/gen/merch/shop/v1/shop_pb";
import { reasonOf, validation } from "@merch/kit";
import type { FastifyRequest } from "fastify";
import { challengeFor } from "./problems.ts";
import { staffShopMethods } from "./shop-staff.ts";
import type { StaffDesk } from "./staff.ts";
import type { Authenticated, RequestInfo, Store } from "./store.ts";

// merch.shop.v1.ShopService: the REST API's twin for browsers and RPC clients, an adapter from
// Connect to the same Store the REST routes use.

/** The Fastify request a call arrived on (connect-fastify's contextValues puts it there). */
export const kRequest = createContextKey<FastifyRequest | undefined>(undefined, { description: "fastify request" });
const kAuth = createContextKey<Authenticated | undefined>(undefined, { description: "authenticated caller" });

/** The methods anyone may call; every other one needs a Bearer token. */
const OPEN = new Set(["ListProducts", "GetProduct", "Register", "Login"]);

function infoOf(req: FastifyRequest | undefined): RequestInfo {
  return { requestId: req?.id ?? "", clientAddress: req?.ip ?? "" };
}

/**
 * db-service's message as the shop's: the internal and public messages have the same fields and
 * enum values, only their names differ (convert.test.ts holds them to it).
 */
function shopMessage<Desc extends DescMessage>(desc: Desc): (message: object | undefined) => MessageShape<Desc> {
  return (message) => {
    if (message === undefined) throw new Error(`db-service sent no ${desc.name}`);
    return create(desc, message as MessageInitShape<Desc>);
  };
}
const product = shopMessage(ProductSchema);
const user = shopMessage(UserSchema);
const order = shopMessage(OrderSchema);

/**
 * Checks the Bearer token of every call that needs one, with the same verifier the REST routes
 * use, and hands the caller to the handler in the call's context values.
 */
function authentication(store: Store): Interceptor {
  return (next) => async (req) => {
    if (!OPEN.has(req.method.name)) {
      const fastify = req.contextValues.get(kRequest);
      const auth = await store.authenticate(infoOf(fastify), req.header.get("authorization")).catch((e: unknown) => {
        // The same challenge as REST's 401: connect-fastify sends an error's metadata as headers.
        const reason = e instanceof ConnectError ? reasonOf(e) : undefined;
        const challenge = reason === undefined ? undefined : challengeFor(reason);
        if (challenge !== undefined) (e as ConnectError).metadata.set("www-authenticate", challenge);
        throw e;
      });
      req.contextValues.set(kAuth, auth);
      if (fastify) fastify.userId = auth.subject.userId;
    }
    return next(req);
  };
}

function shopService(store: Store, staff: StaffDesk): ServiceImpl<typeof ShopService> {
  const info = (ctx: HandlerContext) => infoOf(ctx.values.get(kRequest));
  const auth = (ctx: HandlerContext): Authenticated => {
    const caller = ctx.values.get(kAuth);
    if (caller === undefined) throw new Error("ShopService reached without authentication");
    return caller;
  };
  return {
    async listProducts(_req, ctx) {
      return { products: (await store.listProducts(info(ctx))).map(product) };
    },
    async getProduct(req, ctx) {
      return { product: product(await store.getProduct(info(ctx), req.id)) };
    },
    async register(req, ctx) {
      const created = await store.register(info(ctx), req);
      const fastify = ctx.values.get(kRequest);
      if (fastify) fastify.userId = created.id;
      return { user: user(created) };
    },
    async login(req, ctx) {
      if (req.login.case === undefined) throw new Error("validation lets no login through without a name");
      const res = await store.login(info(ctx), { case: req.login.case, value: req.login.value }, req.password);
      const fastify = ctx.values.get(kRequest);
      if (fastify) fastify.userId = res.user.id;
      return { token: res.token, expiresIn: res.expiresIn, user: user(res.user) };
    },
    async logout(_req, ctx) {
      await store.logout(auth(ctx));
      return {};
    },
    async getMe(_req, ctx) {
      return { user: user(await store.me(auth(ctx))) };
    },
    async updateMe(req, ctx) {
      return { user: user(await store.updateMe(auth(ctx), req)) };
    },
    async deactivateMe(_req, ctx) {
      await store.deactivateMe(auth(ctx));
      return {};
    },
    async listOrders(req, ctx) {
      const page = await store.listOrders(auth(ctx), { pageSize: req.pageSize, pageToken: req.pageToken });
      return { orders: page.orders.map(order), nextPageToken: page.nextPageToken };
    },
    async placeOrder(req, ctx) {
      const placed = await store.placeOrder(auth(ctx), {
        productId: req.productId,
        quantity: req.quantity,
        idempotencyKey: req.idempotencyKey === "" ? undefined : req.idempotencyKey,
      });
      return { order: order(placed.order), replayed: placed.replayed };
    },
    async getOrder(req, ctx) {
      return { order: order(await store.getOrder(auth(ctx), req.id)) };
    },
    async cancelOrder(req, ctx) {
      return { order: order(await store.cancelOrder(auth(ctx), req.id)) };
    },
    ...staffShopMethods(staff, auth),
  };
}

/** The routes and interceptors connect-fastify mounts on the gateway. */
export function shopRoutes(store: Store, staff: StaffDesk) {
  return {
    routes(router: ConnectRouter) {
      router.service(ShopService, shopService(store, staff));
    },
    // Validation first (bad input costs no token check), then authentication.
    interceptors: [...validation(), authentication(store)],
  };
}

export { ShopService };
