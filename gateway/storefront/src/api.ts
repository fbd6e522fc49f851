import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { ShopService } from "@merch/gen/merch/shop/v1/shop_pb";

// The storefront's one connection to the store: ShopService over the Connect protocol with JSON
// bodies, on the origin that served the page (so the CSP's connect-src 'self' covers it, and no
// CORS is involved).

/** No call may hang the page: the gateway's own deadline to db-service is 5 s. */
const CALL_TIMEOUT_MS = 10_000;
const TOKEN_KEY = "merch-shop-token";

/**
 * The Bearer token: in memory, mirrored to sessionStorage so that a reload keeps the tab signed
 * in, while closing the tab ends it (localStorage would keep it for every tab, for a day). The
 * CSP allows no script but the bundle, so storage adds no way in that the page itself lacks.
 */
export class Session {
  #token: string | undefined;

  constructor() {
    this.#token = read();
  }

  get token(): string | undefined {
    return this.#token;
  }

  set(token: string): void {
    this.#token = token;
    write(token);
  }

  clear(): void {
    this.#token = undefined;
    write(undefined);
  }
}

// Storage can be switched off (private modes, policies): the session then lives in memory only.
function read(): string | undefined {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? undefined;
  } catch {
    return undefined;
  }
}

function write(token: string | undefined): void {
  try {
    if (token === undefined) sessionStorage.removeItem(TOKEN_KEY);
    else sessionStorage.setItem(TOKEN_KEY, token);
  } catch {
    // Memory only, as above.
  }
}

export type Shop = Client<typeof ShopService>;

export function shopClient(session: Session): Shop {
  // Every call carries the token when there is one; the open methods ignore it.
  const bearer: Interceptor = (next) => (req) => {
    const token = session.token;
    if (token !== undefined) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const transport = createConnectTransport({
    baseUrl: window.location.origin,
    interceptors: [bearer],
    defaultTimeoutMs: CALL_TIMEOUT_MS,
  });
  return createClient(ShopService, transport);
}
