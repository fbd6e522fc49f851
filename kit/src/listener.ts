import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";

import type { connectNodeAdapter } from "@connectrpc/connect-node";

/** A request handler that both node:http and node:http2 servers accept. */
export type DualHandler = ReturnType<typeof connectNodeAdapter>;

export interface DualListener {
  readonly port: number;
  /** Requests (HTTP/1.1) and streams (HTTP/2) being answered right now. */
  inFlight(): number;
  /**
   * Stops accepting connections, lets in-flight requests finish for up to graceMs, then
   * destroys what is left.
   */
  close(graceMs: number): Promise<void>;
}

// Every cleartext HTTP/2 connection with prior knowledge (gRPC over h2c) starts with this
// preface; no HTTP/1.x request line can start with "PRI ".
/** Streams one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
export const MAX_CONCURRENT_STREAMS = 128;

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * Serves HTTP/1.1 and cleartext HTTP/2 on one port. Node's http2 server accepts HTTP/1.1 only
 * through TLS ALPN, so a plain TCP server peeks at the first bytes of each connection and hands
 * it to the right server.
 */
export async function listenDual(handler: DualHandler, opts: { port: number; host?: string }): Promise<DualListener> {
  let active = 0;
  const tracked: DualHandler = (req, res) => {
    active++;
    // Done once the response is written: a client may keep its own side of a stream open.
    let counted = true;
    const done = () => {
      if (counted) active--;
      counted = false;
    };
    res.once("finish", done);
    res.once("close", done);
    handler(req, res);
  };
  const h1 = http.createServer({ keepAliveTimeout: 65_000 }, tracked);
  // A peer gets at most this many streams at once; its HTTP/2 stack queues the rest (nghttp2
  // holds them until a stream closes). Without a bound, a burst of a thousand calls on the
  // gateway's one connection made a thousand handlers at once and ran db-service out of heap.
  const h2 = http2.createServer({ settings: { maxConcurrentStreams: MAX_CONCURRENT_STREAMS } }, tracked);
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });

  const tcp = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    // A connection that never says which protocol it speaks must not be held forever.
    socket.setTimeout(10_000, () => socket.destroy());
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const n = Math.min(head.length, H2_PREFACE.length);
      const isH2 = head.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (isH2 && head.length < H2_PREFACE.length) return; // wait for the whole preface
      // The bytes go back into the paused socket for the chosen server to read first. The
      // http2 session reads them itself and then takes over the socket's handle: resuming the
      // stream would lose them. The http server expects a flowing socket.
      socket.off("data", onData);
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(head);
      if (isH2) {
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
  });

  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen(opts.port, opts.host ?? "0.0.0.0", () => {
      tcp.off("error", reject);
      resolve();
    });
  });
  const address = tcp.address() as net.AddressInfo;

  return {
    port: address.port,
    inFlight: () => active,
    async close(graceMs) {
      const closed = new Promise<void>((resolve) => tcp.close(() => resolve()));
      h1.close();
      h1.closeIdleConnections();
      for (const session of sessions) session.close();
      const deadline = Date.now() + graceMs;
      while (active > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 25));
      }
      for (const session of sessions) session.destroy();
      h1.closeAllConnections();
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
