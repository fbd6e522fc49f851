import { createHmac, randomUUID } from "node:crypto";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ConnectError } from "@connectrpc/connect";
import type { Order } from "@merch/gen/merch/store/v1/order_pb";
import type { Product } from "@merch/gen/merch/store/v1/product_pb";
import type { User } from "@merch/gen/merch/store/v1/user_pb";
import { ErrorReason, reasonOf, rpcError } from "@merch/kit";
import type { DbClients } from "./clients.ts";
import type { EventInput, EventLog } from "./event-log.ts";
import type { OrderBatcher } from "./order-batcher.ts";
import type { ProductCache } from "./product-cache.ts";
import { publicError } from "./refusals.ts";
import { issueToken, TOKEN_LIFETIME_S, type TokenSettings, type TokenSubject, type TokenVerifier } from "./tokens.ts";

// The store's operations, written once. The REST routes (rest/) and ShopService (shop.ts) are
// thin adapters from their protocol to these functions: every rule, every event and every
// refusal lives here, and both doors answer alike.

/** What every operation knows of the request that asked for it. */
export interface RequestInfo {
  requestId: string;
  /** The client's address, as far as TRUST_PROXY lets the gateway believe headers. */
  clientAddress: string;
}

/** A request whose Bearer token was verified. */
export interface Authenticated extends RequestInfo {
  subject: TokenSubject;
  token: string;
}

export type LoginName = { case: "username"; value: string } | { case: "sid"; value: string };

export interface UserChanges {
  username?: string | undefined;
  email?: string | undefined;
  password?: string | undefined;
  currentPassword?: string | undefined;
}

export interface StoreDeps {
  db: DbClients;
  events: EventLog;
  tokens: TokenSettings;
  verifier: TokenVerifier;
  products: ProductCache;
  /** Carries orders to db-service several per call. */
  orders: OrderBatcher;
  /** Keys the login-name hashes in audit events, so a log reader cannot test guesses offline. */
  auditKey: Uint8Array;
}

const BEARER = /^Bearer[ ]+([A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*)[ ]*$/i;

export class Store {
  readonly #d: StoreDeps;

  constructor(deps: StoreDeps) {
    this.#d = deps;
  }

  #emit(info: RequestInfo, input: Omit<EventInput, "requestId">, userId?: number): void {
    this.#d.events.emit({ ...input, requestId: info.requestId, userId: input.userId ?? userId });
  }

  /** A failed call, as the client hears it; a token whose session has ended is logged as such. */
  #refused(info: RequestInfo, err: unknown, write: boolean, userId?: number): ConnectError {
    const refusal = publicError(err, write);
    if (reasonOf(refusal) === ErrorReason.INVALID_TOKEN) {
      this.#emit(
        info,
        {
          level: "warn",
          event: "auth.failed",
          message: "authentication failed: session_ended",
          attributes: { reason: "session_ended" },
        },
        userId,
      );
    }
    return refusal;
  }

  async #call<T>(info: RequestInfo, write: boolean, call: () => Promise<T>, userId?: number): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw this.#refused(info, err, write, userId);
    }
  }

  // --- Who is asking

  /**
   * Checks a Bearer token's signature and claims (its session is checked by db-service in the
   * call that does the work). Refusals are logged with why, never with the token.
   */
  async authenticate(info: RequestInfo, authorization: string | undefined | null): Promise<Authenticated> {
    const refuse = (
      why: string,
      reason: typeof ErrorReason.AUTHENTICATION_REQUIRED | typeof ErrorReason.INVALID_TOKEN,
    ) => {
      this.#emit(info, {
        level: "warn",
        event: "auth.failed",
        message: `authentication failed: ${why}`,
        attributes: { reason: why },
      });
      return rpcError(
        reason,
        reason === ErrorReason.AUTHENTICATION_REQUIRED
          ? "a Bearer token is required"
          : "the token is invalid or expired",
      );
    };
    if (authorization === undefined || authorization === null) {
      throw refuse("missing_token", ErrorReason.AUTHENTICATION_REQUIRED);
    }
    const token = BEARER.exec(authorization)?.[1];
    if (token === undefined) throw refuse("malformed_header", ErrorReason.INVALID_TOKEN);
    const check = await this.#d.verifier.verify(token);
    if (!check.ok) throw refuse(check.reason, ErrorReason.INVALID_TOKEN);
    return { ...info, subject: { userId: check.userId, sessionId: check.sessionId }, token };
  }

  #session(auth: Authenticated) {
    return { userId: auth.subject.userId, sessionId: auth.subject.sessionId };
  }

  /** A keyed hash of a login name for audit events: the same name always hashes alike. */
  #nameHash(name: string): string {
    return createHmac("sha256", this.#d.auditKey).update(name.toLowerCase()).digest("hex").slice(0, 32);
  }

  // --- Products

  async listProducts(info: RequestInfo): Promise<Product[]> {
    return this.#call(info, false, () => this.#d.products.list());
  }

  async getProduct(info: RequestInfo, id: number): Promise<Product> {
    return this.#call(info, false, async () => {
      const cached = await this.#d.products.get(id);
      if (cached) return cached;
      // Not in the catalogue: unknown (db-service says so), or newer than what the gateway holds.
      const { product } = await this.#d.db.products.getProduct({ id });
      if (!product) throw new Error("db-service sent no product");
      return product;
    });
  }

  // --- Accounts

  async register(
    info: RequestInfo,
    body: { sid: string; username: string; email: string; password: string },
  ): Promise<User> {
    const { user } = await this.#call(info, true, () =>
      this.#d.db.users.registerUser({ ...body, clientAddress: info.clientAddress }),
    );
    if (!user) throw new Error("db-service sent no user");
    this.#emit(info, { level: "info", event: "user.registered", message: "account created", userId: user.id });
    return user;
  }

  async login(
    info: RequestInfo,
    login: LoginName,
    password: string,
  ): Promise<{ token: string; expiresIn: number; user: User }> {
    const audit = {
      login_type: login.case,
      client_address: info.clientAddress,
      login_hash: this.#nameHash(login.value),
    };
    try {
      const res = await this.#d.db.users.authenticateUser({ login, password, clientAddress: info.clientAddress });
      const user = res.user;
      if (!user || !res.sessionExpiresAt) throw new Error("db-service sent no user or session");
      const expiresAt = timestampDate(res.sessionExpiresAt);
      const token = await issueToken(this.#d.tokens, { userId: user.id, sessionId: res.sessionId }, expiresAt);
      this.#emit(info, {
        level: "info",
        event: "user.login_succeeded",
        message: "logged in",
        userId: user.id,
        attributes: { login_type: login.case, client_address: info.clientAddress },
      });
      return { token, expiresIn: TOKEN_LIFETIME_S, user };
    } catch (err) {
      const refusal = publicError(err, false);
      const reason = reasonOf(refusal);
      if (reason === ErrorReason.TOO_MANY_ATTEMPTS) {
        this.#emit(info, {
          level: "warn",
          event: "user.login_throttled",
          message: "login refused after repeated failures",
          attributes: audit,
        });
      } else if (reason === ErrorReason.INVALID_CREDENTIALS || reason === ErrorReason.ACCOUNT_DEACTIVATED) {
        this.#emit(info, {
          level: "warn",
          event: "user.login_failed",
          message: "login failed",
          attributes: {
            ...audit,
            reason: reason === ErrorReason.INVALID_CREDENTIALS ? "invalid_credentials" : "account_deactivated",
          },
        });
      }
      throw refusal;
    }
  }

  async logout(auth: Authenticated): Promise<void> {
    await this.#call(
      auth,
      true,
      () => this.#d.db.users.endSession({ session: this.#session(auth) }),
      auth.subject.userId,
    );
    this.#d.verifier.forget(auth.token);
    this.#emit(auth, { level: "info", event: "user.logged_out", message: "logged out" }, auth.subject.userId);
  }

  async me(auth: Authenticated): Promise<User> {
    const { user } = await this.#call(
      auth,
      false,
      () => this.#d.db.users.getUser({ session: this.#session(auth) }),
      auth.subject.userId,
    );
    if (!user) throw new Error("db-service sent no user");
    return user;
  }

  async updateMe(auth: Authenticated, changes: UserChanges): Promise<User> {
    const { user } = await this.#call(
      auth,
      true,
      () =>
        this.#d.db.users.updateUser({
          session: this.#session(auth),
          ...(changes.username === undefined ? {} : { username: changes.username }),
          ...(changes.email === undefined ? {} : { email: changes.email }),
          ...(changes.password === undefined ? {} : { password: changes.password }),
          ...(changes.currentPassword === undefined ? {} : { currentPassword: changes.currentPassword }),
        }),
      auth.subject.userId,
    );
    if (!user) throw new Error("db-service sent no user");
    const fields = (["username", "email", "password"] as const).filter((f) => changes[f] !== undefined);
    this.#emit(
      auth,
      { level: "info", event: "user.updated", message: "profile updated", attributes: { fields: fields.join(",") } },
      auth.subject.userId,
    );
    return user;
  }

  async deactivateMe(auth: Authenticated): Promise<void> {
    await this.#call(
      auth,
      true,
      () => this.#d.db.users.deactivateUser({ session: this.#session(auth) }),
      auth.subject.userId,
    );
    this.#emit(auth, { level: "info", event: "user.deactivated", message: "account deactivated" }, auth.subject.userId);
  }

  // --- Orders

  async listOrders(
    auth: Authenticated,
    page: { pageSize: number; pageToken: string },
  ): Promise<{ orders: Order[]; nextPageToken: string }> {
    return this.#call(
      auth,
      false,
      () => this.#d.db.orders.listOrders({ session: this.#session(auth), ...page }),
      auth.subject.userId,
    );
  }

  /**
   * Every order carries an idempotency key, the client's or one made here, so that no retry (the
   * client's with its key, the gateway's own, db-service's batch run again) can place it twice.
   */
  async placeOrder(
    auth: Authenticated,
    req: { productId: number; quantity: number; idempotencyKey?: string | undefined },
  ): Promise<{ order: Order; replayed: boolean }> {
    const idempotencyKey = req.idempotencyKey ?? `gateway:${randomUUID()}`;
    const res = await this.#call(
      auth,
      true,
      () =>
        this.#d.orders.place({
          session: this.#session(auth),
          productId: req.productId,
          quantity: req.quantity,
          idempotencyKey,
        }),
      auth.subject.userId,
    );
    const order = res.order;
    if (!order) throw new Error("db-service sent no order");
    if (res.product) this.#d.products.apply(res.product);
    this.#emit(
      auth,
      {
        level: "info",
        event: res.replayed ? "order.replayed" : "order.placed",
        message: res.replayed ? "order request repeated with the same Idempotency-Key" : "order placed",
        attributes: {
          order_id: String(order.id),
          product_id: String(order.productId),
          quantity: String(order.quantity),
          total_price: order.totalPrice,
        },
      },
      auth.subject.userId,
    );
    return { order, replayed: res.replayed };
  }

  async getOrder(auth: Authenticated, id: number): Promise<Order> {
    const { order } = await this.#call(
      auth,
      false,
      () => this.#d.db.orders.getOrder({ session: this.#session(auth), orderId: id }),
      auth.subject.userId,
    );
    if (!order) throw new Error("db-service sent no order");
    return order;
  }

  async cancelOrder(auth: Authenticated, id: number): Promise<Order> {
    const res = await this.#call(
      auth,
      true,
      () => this.#d.db.orders.cancelOrder({ session: this.#session(auth), orderId: id }),
      auth.subject.userId,
    );
    const order = res.order;
    if (!order) throw new Error("db-service sent no order");
    // A repeated cancellation answers as the first did but changes nothing (db-service sends no
    // product then), so it is no new event: consumers count cancellations, and each event has an
    // id of its own, so a second one could not be told from a real one.
    if (!res.product) return order;
    this.#d.products.apply(res.product);
    // Staff cancel on a customer's behalf: the event names both.
    const byStaff = order.userId !== auth.subject.userId;
    this.#emit(
      auth,
      {
        level: "info",
        event: "order.cancelled",
        message: byStaff ? "order cancelled by staff" : "order cancelled",
        attributes: {
          order_id: String(order.id),
          product_id: String(order.productId),
          quantity: String(order.quantity),
          ...(byStaff
            ? { by: "staff", staff_user_id: String(auth.subject.userId), customer_user_id: String(order.userId) }
            : {}),
        },
      },
      auth.subject.userId,
    );
    return order;
  }
}
