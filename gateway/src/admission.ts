import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";

/** What admitAtMost reports, for /metrics and the tests. */
export interface Admission {
  /** Requests being answered now. */
  inFlight(): number;
  /** Whether idle connections are not being read right now. */
  paused(): boolean;
}

/** The stream handle under a socket, as Node's http server reads it. */
interface ReadableHandle {
  readStop(): number;
  readStart(): number;
}

const handleOf = (socket: Socket) => (socket as unknown as { _handle?: ReadableHandle | null })._handle ?? undefined;

/**
 * At most `limit` requests answered at once: past it the server stops reading its idle
 * connections, so the requests clients send meanwhile wait in the kernel's socket buffers, as
 * bytes, not in the gateway's heap as parsed requests, promises and queued calls; it reads them
 * again once half the limit has been answered. A flash sale's 10,000 buyers at once ran the
 * gateway out of heap (about 15 KB per request waiting its turn), and each waited for db-service
 * with its deadline running, so that the last ones were refused 503 without ever being sent.
 * Waiting in the kernel costs neither: a request's deadline starts when it is read.
 *
 * Only connections with no request being answered are paused: a request already read goes on,
 * and a client's next request on its connection comes after its answer anyway (HTTP/1.1).
 * Node's http server reads a connection through its stream handle directly (the parser consumes
 * it), so pausing is the handle's readStop, and resuming its readStart.
 */
export function admitAtMost(server: Server, limit: number): Admission {
  let inFlight = 0;
  let paused = false;
  /** Connections with no request being answered: the ones a pause stops reading. */
  const idle = new Set<Socket>();
  const stop = (socket: Socket) => {
    handleOf(socket)?.readStop();
  };
  const start = (socket: Socket) => {
    if (!socket.destroyed) handleOf(socket)?.readStart();
  };
  const resume = () => {
    paused = false;
    for (const socket of idle) start(socket);
  };
  server.on("connection", (socket: Socket) => {
    idle.add(socket);
    socket.once("close", () => idle.delete(socket));
    // Node's own listener, registered first, has set the connection up: it is not read before
    // this turn ends.
    if (paused) stop(socket);
  });
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    inFlight++;
    idle.delete(socket);
    if (!paused && inFlight >= limit) {
      paused = true;
      for (const s of idle) stop(s);
    }
    res.once("close", () => {
      inFlight--;
      if (socket.destroyed) return;
      idle.add(socket);
      if (!paused) return;
      if (inFlight <= limit / 2) resume();
      else stop(socket);
    });
  });
  return { inFlight: () => inFlight, paused: () => paused };
}
