import type { ClientHttp2Session } from "node:http2";
import { Http2SessionManager } from "@connectrpc/connect-node";

/**
 * connect-node's Http2SessionManager, guarded against a crash it can cause. When a peer closes an
 * idle connection with GOAWAY (a service restarting, say), the manager destroys that connection
 * with an error that Node.js raises a moment later on the session; if a new request has made the
 * manager move on to a new connection in between, nobody listens any more and the error kills
 * the process as an uncaught exception (connectrpc/connect-es#1768, fix not released in 2.3.0).
 * Every session that carried a request keeps a listener that ignores that late error: the
 * manager has already given the connection up, and requests on it failed on their own.
 */
export class GuardedSessionManager extends Http2SessionManager {
  readonly #guarded = new WeakSet<ClientHttp2Session>();

  override async request(...args: Parameters<Http2SessionManager["request"]>) {
    const stream = await super.request(...args);
    const session = stream.session as ClientHttp2Session | undefined;
    if (session && !this.#guarded.has(session)) {
      this.#guarded.add(session);
      session.on("error", () => {});
    }
    return stream;
  }
}
