import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";

/** What admitAtMost reports, for /metrics and the tests. */
export interface Admission {
  /** Requests being answered now. */
  inFlight(): number;
  /** Idle connections not being read now, waiting for their turn. */
  waiting(): number;
}

/** The stream handle under a socket, as Node's http server reads it. */
interface ReadableHandle {
  readStop(): number;
  readStart(): number;
}

const handleOf = (socket: Socket) => (socket as unknown as { _handle?: ReadableHandle | null })._handle ?? undefined;

/**
 * At most about `limit` requests answered at once: at the limit the server stops reading its
 * idle connections, so that the requests their clients send meanwhile wait in the kernel's
 * socket buffers, as bytes, not in the gateway's heap as parsed requests, replies, promises and
 * queued calls. A flash sale's 10,000 buyers at once ran the gateway out of heap (about 15 KB per
 * request waiting its turn), and each waited for db-service with its deadline running, so that
 * the last ones were refused 503 without ever being sent. Waiting in the kernel costs neither: a
 * request's deadline starts when it is read.
 *
 * Connections wait their turn first come, first served: as answers free slots, the longest
 * stopped connections are read again, as many as there are free slots each turn of the event
 * loop, until one has delivered enough requests to reach the limit again. A connection stopped
 * and read again costs two system calls, once per request whatever the number of connections.
 * Only idle connections are stopped: a request already read goes on, and a client's next request
 * on its connection comes after its answer (HTTP/1.1). Node's http server reads a connection
 * through its stream handle directly (the parser consumes it), so stopping is the handle's
 * readStop, and reading again its readStart. A request can pass the limit by the requests that
 * connections read again in the same turn bring.
 */
export function admitAtMost(server: Server, limit: number): Admission {
  let inFlight = 0;
  /** Idle connections being read. */
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
  const refill = () => {
    refillScheduled = false;
    let free = limit - inFlight;
    if (free <= 0) return;
    for (const socket of stopped) {
      if (free-- <= 0) break;
      stopped.delete(socket);
      reading.add(socket);
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

  server.on("connection", (socket: Socket) => {
    socket.once("close", () => {
      reading.delete(socket);
      stopped.delete(socket);
    });
    // Node's own listener, registered first, has set the connection up: it is not read before
    // this turn ends. It waits behind the ones already waiting.
    if (inFlight >= limit || stopped.size > 0) stop(socket);
    else reading.add(socket);
  });
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    inFlight++;
    reading.delete(socket);
    stopped.delete(socket);
    if (inFlight >= limit) stopAll();
    res.once("close", () => {
      inFlight--;
      if (!socket.destroyed) {
        // Its next request waits behind the connections already waiting.
        if (inFlight >= limit || stopped.size > 0) stop(socket);
        else reading.add(socket);
      }
      scheduleRefill();
    });
  });
  return { inFlight: () => inFlight, waiting: () => stopped.size };
}
