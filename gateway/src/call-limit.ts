import type { Transport } from "@connectrpc/connect";
import { ErrorReason, rpcError } from "@merch/kit";

export interface LimitedTransport extends Transport {
  /** Unary calls waiting for a turn. */
  waiting(): number;
  /** Unary calls in flight. */
  active(): number;
}

/**
 * At most `limit` unary calls through the transport at once; the rest wait their turn, first
 * come first served, and the wait counts against their deadline. db-service lets one connection
 * open MAX_CONCURRENT_STREAMS streams at once; calls past that would wait in the HTTP/2 stack
 * anyway, but each with its whole call (stream, buffers, promises) already made: a flash sale's
 * thousand buyers ran the gateway out of heap that way. Waiting here costs one small closure.
 *
 * A call whose deadline passes before its turn was never sent, so it is refused as
 * service_unavailable (nothing changed, retry), not as a timeout whose outcome is unknown.
 * Streams (WatchProducts) live as long as the gateway and are not counted.
 */
export function limitCalls(inner: Transport, limit: number, defaultTimeoutMs: number): LimitedTransport {
  let active = 0;
  const queue: (() => void)[] = [];
  const release = () => {
    const next = queue.shift();
    // The slot passes straight to the next call: `active` stays as it is.
    if (next) next();
    else active--;
  };
  /** Resolves with the time waited once the call has a slot; rejects when its time is up first. */
  const turn = (signal: AbortSignal | undefined, timeoutMs: number): Promise<number> => {
    if (active < limit) {
      active++;
      return Promise.resolve(0);
    }
    const since = performance.now();
    return new Promise((resolve, reject) => {
      const give = (err: unknown) => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        const at = queue.indexOf(go);
        if (at >= 0) queue.splice(at, 1);
        reject(err);
      };
      const onAbort = () => give(signal?.reason);
      // A call without a deadline (timeoutMs <= 0) waits as long as it takes.
      const timer = setTimeout(
        () =>
          give(
            rpcError(
              ErrorReason.SERVICE_UNAVAILABLE,
              "the store is too busy right now; nothing was changed, retry shortly",
              {
                retryAfterS: 1,
              },
            ),
          ),
        timeoutMs > 0 ? timeoutMs : 2 ** 31 - 1,
      );
      const go = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        resolve(performance.now() - since);
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      queue.push(go);
    });
  };
  return {
    async unary(method, signal, timeoutMs, header, input, contextValues) {
      const budget = timeoutMs ?? defaultTimeoutMs;
      const waited = await turn(signal, budget);
      try {
        const left = budget > 0 ? Math.max(1, Math.floor(budget - waited)) : budget;
        return await inner.unary(method, signal, left, header, input, contextValues);
      } finally {
        release();
      }
    },
    stream(method, signal, timeoutMs, header, input, contextValues) {
      return inner.stream(method, signal, timeoutMs, header, input, contextValues);
    },
    waiting: () => queue.length,
    active: () => active,
  };
}
