import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { createRequire } from "node:module";
import type { Socket } from "node:net";

/** What admitAtMost reports, for /metrics and the tests. */
export interface Admission {
  /** Requests being answered now. */
  inFlight(): number;
  /** Idle connections not being read now, waiting for their turn. */
  waiting(): number;
  /** Connections the HTTP server holds (each with its parser). */
  attached(): number;
  /** Connections the HTTP server does not hold: new ones, and idle ones detached after an answer. */
  parked(): number;
}

export interface AdmissionLimits {
  /** Requests answered at once (HTTP_MAX_REQUESTS_IN_FLIGHT). */
  maxInFlight: number;
  /** Connections kept attached to the HTTP server between requests (HTTP_MAX_ATTACHED_CONNECTIONS). */
  maxAttached: number;
}

/** The stream handle under a socket, as Node's http server reads it. */
interface ReadableHandle {
  readStop(): number;
  readStart(): number;
  /** Node's mark that an HTTP parser reads the handle directly; the next parser only if unset. */
  _consumed?: boolean;
}

/** Node's HTTP parser of a connection (node:_http_common), as much of it as is used here. */
interface HttpParser {
  incoming: IncomingMessage | null;
  /** Ends the input: an Error if part of a message has been read (and nothing else happens then). */
  finish(): unknown;
}

/** A socket as Node's http server leaves it on the connection. */
interface ServedSocket {
  _handle?: ReadableHandle | null;
  parser?: HttpParser | null;
  _httpMessage?: unknown;
  /** Set while the server holds back reading for a response that cannot be written yet. */
  _paused?: boolean;
}

const served = (socket: Socket) => socket as unknown as ServedSocket;
const handleOf = (socket: Socket) => served(socket)._handle ?? undefined;

// Node frees a connection's parser with this when the connection closes or is upgraded; the gate
// does the same when it detaches an idle connection.
const { freeParser } = createRequire(import.meta.url)("node:_http_common") as {
  freeParser(parser: HttpParser, req: null, socket: Socket): void;
};

/**
 * The listeners Node's http server puts on a connection (connectionListenerInternal in
 * lib/_http_server.js), by name: the ones detaching removes, as the server does on an upgrade.
 * `required`: a connection without exactly one of each is not detached (it is closing, or a
 * future Node sets connections up differently: then connections simply stay attached).
 */
const HTTP_LISTENERS: readonly { event: string; name: string; required: boolean }[] = [
  { event: "data", name: "bound socketOnData", required: true },
  { event: "end", name: "bound socketOnEnd", required: true },
  { event: "close", name: "bound socketOnClose", required: true },
  { event: "drain", name: "bound socketOnDrain", required: true },
  { event: "error", name: "socketOnError", required: true },
  { event: "timeout", name: "socketOnTimeout", required: true },
  { event: "pause", name: "onSocketPause", required: false },
  { event: "resume", name: "onSocketResume", required: false },
];

type Listener = (...args: unknown[]) => void;

/**
 * Takes an idle connection away from Node's http server: frees its parser (back to Node's pool)
 * and removes the server's listeners, as the server itself does when a connection is upgraded, so
 * that the connection is a bare socket again, which `attach` can hand to the server anew. Only a
 * connection between messages: no request being read or answered, and no part of the next one in
 * the parser (a client may send it before it is answered: its bytes would be lost with the
 * parser). Returns whether it was detached.
 */
function detach(socket: Socket): boolean {
  const s = served(socket);
  const parser = s.parser;
  const handle = s._handle;
  if (!parser || !handle || s._httpMessage || s._paused || socket.writableEnded) return false;
  // The request answered may not have emitted its 'end' yet (a body nobody read is dumped); it
  // has been read whole, and the server forgets it once its parser is gone.
  if (parser.incoming && !parser.incoming.complete) return false;
  const found: { event: string; fn: Listener }[] = [];
  for (const { event, name, required } of HTTP_LISTENERS) {
    const fns = socket.listeners(event).filter((fn) => fn.name === name) as Listener[];
    if (fns.length > 1 || (required && fns.length === 0)) return false;
    for (const fn of fns) found.push({ event, fn });
  }
  if (parser.finish() instanceof Error) return false;
  for (const { event, fn } of found) socket.removeListener(event, fn);
  freeParser(parser, null, socket);
  // The next parser reads the handle directly again (Node marks a handle read by a parser once).
  handle._consumed = false;
  return true;
}

/** A connection's state in the gate. */
interface Connection {
  /** Its requests being answered. */
  requests: number;
  /** Whether the HTTP server holds it. */
  attached: boolean;
  /** What a parked connection sent while no request could be admitted: its next request. */
  pending: Buffer[] | undefined;
  /** When a parked connection, silent since, is closed (ms, Date.now()); 0: never. */
  closeAt: number;
}

/**
 * At most about `maxInFlight` requests answered at once, and the HTTP server holding at most
 * about `maxAttached` idle connections, whatever the number of connections open.
 *
 * Requests: at the limit the gate stops reading idle connections, so that the requests their
 * clients send meanwhile wait in the kernel's socket buffers, as bytes, not in the gateway's heap
 * as parsed requests, replies, promises and queued calls. A flash sale's 10,000 buyers at once ran
 * the gateway out of heap (about 15 KB per request waiting its turn), and each waited for
 * db-service with its deadline running, so that the last ones were refused 503 without ever being
 * sent. Waiting in the kernel costs neither: a request's deadline starts when it is read.
 *
 * Connections: Node's http server sets a connection up when it is accepted, whether or not it
 * ever sends a request: an HTTP parser, its listeners and state, about 10 KB a connection, two
 * thirds of it native (measured: 10,000 idle connections +100 MB resident, against +23 MB for a
 * bare net server). So the gate stands in front of the server: a new connection is parked, a bare
 * socket, and handed to the server (attached) when its first bytes arrive. An idle connection is
 * detached after its answer when the server holds more than `maxAttached` connections, and parked
 * until it sends its next request: a client keeps its keep-alive connection, and ten thousand
 * buyers cost the gateway a bare socket each until they order. Below the mark nothing is
 * detached: ordinary keep-alive clients cost no more than before. Detaching leans on how Node's
 * server sets a connection up (its listeners' names, `_http_common`'s freeParser, as for an
 * upgrade): on a Node that does it otherwise, `detach` declines and connections stay attached,
 * which admission.test.ts notices.
 *
 * Connections wait their turn first come, first served: as answers free slots, the longest
 * stopped connections are read again (or, parked with a request read, attached), as many as there
 * are free slots each turn of the event loop, until one has delivered enough requests to reach the
 * limit again. A connection stopped and read again costs two system calls, once per request
 * whatever the number of connections. Only idle connections are stopped: a request already read
 * goes on, and a client's next request on its connection comes after its answer (HTTP/1.1).
 * Node's http server reads a connection through its stream handle directly (the parser consumes
 * it), so stopping is the handle's readStop, and reading again its readStart. A request can pass
 * the limit by the requests that connections read again in the same turn bring.
 */
export function admitAtMost(server: Server, limits: AdmissionLimits): Admission {
  const { maxInFlight: limit, maxAttached } = limits;
  const nodeListener = server.listeners("connection").find((fn) => fn.name === "connectionListener") as
    | ((this: Server, socket: Socket) => void)
    | undefined;
  if (!nodeListener) throw new Error("admitAtMost: the server has no Node connection listener to stand in front of");
  server.removeListener("connection", nodeListener);

  const connections = new WeakMap<Socket, Connection>();
  let inFlight = 0;
  let attachedCount = 0;
  /** Connections the server does not hold. */
  const parked = new Set<Socket>();
  /** Idle connections being read, attached or parked. */
  const reading = new Set<Socket>();
  /** Idle connections stopped, the longest stopped first. */
  const stopped = new Set<Socket>();
  let refillScheduled = false;

  const stop = (socket: Socket) => {
    reading.delete(socket);
    stopped.add(socket);
    handleOf(socket)?.readStop();
  };
  const stopAll = () => {
    for (const socket of reading) {
      stopped.add(socket);
      handleOf(socket)?.readStop();
    }
    reading.clear();
  };
  /** An idle connection waits behind the ones already waiting, or is read. */
  const idle = (socket: Socket) => {
    if (inFlight >= limit || stopped.size > 0) stop(socket);
    else reading.add(socket);
  };

  // The listeners of a parked connection, shared by all (`this` is the socket).
  function parkedData(this: Socket, chunk: Buffer) {
    const conn = connections.get(this);
    if (!conn) return;
    if (conn.pending) {
      conn.pending.push(chunk);
    } else if (inFlight < limit) {
      attach(this, conn, [chunk]);
    } else {
      // No room for its request: it waits, read, in its turn.
      conn.pending = [chunk];
      stop(this);
    }
  }
  function parkedError() {
    // The socket is destroyed with the error already; without a listener the error would throw.
  }
  const park = (socket: Socket, conn: Connection, idleMs: number) => {
    conn.closeAt = idleMs > 0 ? Date.now() + idleMs : 0;
    parked.add(socket);
    socket.on("error", parkedError);
    socket.on("data", parkedData);
    idle(socket);
  };
  // A parked connection is closed when silent for as long as Node's server would let it be (the
  // connection timeout when new, the keep-alive timeout after an answer), by one sweep a second
  // rather than a timer a connection: ten thousand timers were a sixth of a parked connection's
  // memory.
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const socket of parked) {
      const conn = connections.get(socket);
      if (conn && conn.pending === undefined && conn.closeAt !== 0 && conn.closeAt <= now) socket.destroy();
    }
  }, 1000);
  sweep.unref();
  server.once("close", () => clearInterval(sweep));
  /** Node's keep-alive timeout, as its server sets it on a connection after an answer. */
  const keepAliveMs = () => {
    const buffer = (server as { keepAliveTimeoutBuffer?: number }).keepAliveTimeoutBuffer ?? 1000;
    return server.keepAliveTimeout > 0 ? server.keepAliveTimeout + buffer : 0;
  };
  const attach = (socket: Socket, conn: Connection, chunks: Buffer[]) => {
    parked.delete(socket);
    socket.removeListener("data", parkedData);
    socket.removeListener("error", parkedError);
    conn.attached = true;
    attachedCount++;
    reading.add(socket);
    nodeListener.call(server, socket);
    // The server reads the handle from now on; what was read before, it gets as the socket's data.
    for (const chunk of chunks) {
      if (socket.destroyed) break;
      socket.emit("data", chunk);
    }
  };

  const refill = () => {
    refillScheduled = false;
    let free = limit - inFlight;
    if (free <= 0) return;
    for (const socket of stopped) {
      if (free-- <= 0) break;
      stopped.delete(socket);
      const conn = connections.get(socket);
      const pending = conn?.pending;
      if (conn && pending) {
        conn.pending = undefined;
        attach(socket, conn, pending);
      } else {
        reading.add(socket);
      }
      handleOf(socket)?.readStart();
    }
    // What those connections send arrives in the next turn; more get their turn after it.
    scheduleRefill();
  };
  const scheduleRefill = () => {
    if (refillScheduled || stopped.size === 0 || inFlight >= limit) return;
    refillScheduled = true;
    setImmediate(refill);
  };

  function onClose(this: Socket) {
    reading.delete(this);
    stopped.delete(this);
    parked.delete(this);
    if (connections.get(this)?.attached) attachedCount--;
    connections.delete(this);
  }

  server.on("connection", (socket: Socket) => {
    const conn: Connection = { requests: 0, attached: false, pending: undefined, closeAt: 0 };
    connections.set(socket, conn);
    socket.on("close", onClose);
    park(socket, conn, server.timeout);
  });
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    const conn = connections.get(socket);
    if (conn) conn.requests++;
    inFlight++;
    reading.delete(socket);
    stopped.delete(socket);
    if (inFlight >= limit) stopAll();
    res.once("close", () => {
      inFlight--;
      if (conn) conn.requests--;
      if (!socket.destroyed) {
        if (conn?.requests === 0 && conn.attached && attachedCount > maxAttached && detach(socket)) {
          conn.attached = false;
          attachedCount--;
          // Its timer of Node's server stops: the sweep closes it instead.
          socket.setTimeout(0);
          park(socket, conn, keepAliveMs());
        } else {
          // Its next request waits behind the connections already waiting.
          idle(socket);
        }
      }
      scheduleRefill();
    });
  });

  // Parked connections are idle ones the server does not know of: closing its idle (or all)
  // connections closes them too, so that closing the server does not wait for their timeouts.
  const closeIdle = server.closeIdleConnections.bind(server);
  const closeAll = server.closeAllConnections.bind(server);
  const closeParked = () => {
    for (const socket of parked) socket.destroy();
  };
  server.closeIdleConnections = () => {
    closeIdle();
    closeParked();
  };
  server.closeAllConnections = () => {
    closeAll();
    closeParked();
  };

  return {
    inFlight: () => inFlight,
    waiting: () => stopped.size,
    attached: () => attachedCount,
    parked: () => parked.size,
  };
}
