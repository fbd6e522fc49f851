import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as Status,
} from "@merch/gen/grpc/health/v1/health_pb";
import type { Logger } from "./logger.ts";

export type ServingStatus = "SERVING" | "NOT_SERVING";

export interface FollowOptions {
  /** Each change is logged here, once: "health changed" (info when SERVING, warn when not). */
  logger: Logger;
  /** The server's shutdown: from then on the status is left alone, so NOT_SERVING stays. */
  signal: AbortSignal;
  /** Also checks this often, in case a change went unreported. */
  recheckMs?: number;
}

/**
 * The grpc.health.v1.Health service. The empty service name "" stands for the whole server;
 * each served service has its own entry, and all move together unless set one by one.
 */
export class HealthRegistry {
  readonly #statuses = new Map<string, ServingStatus>();
  readonly #watchers = new Set<() => void>();

  constructor(services: readonly string[], initial: ServingStatus = "NOT_SERVING") {
    for (const name of ["", ...services]) this.#statuses.set(name, initial);
  }

  /** Sets every service's status, or one service's. */
  set(status: ServingStatus, service?: string): void {
    const names = service === undefined ? [...this.#statuses.keys()] : [service];
    let changed = false;
    for (const name of names) {
      if (this.#statuses.get(name) !== status) {
        this.#statuses.set(name, status);
        changed = true;
      }
    }
    if (changed) for (const wake of this.#watchers) wake();
  }

  get(service = ""): ServingStatus | undefined {
    return this.#statuses.get(service);
  }

  /**
   * Makes every service's status follow a condition: SERVING while `serving()` holds, else
   * NOT_SERVING. Sets it now, and returns what to call whenever the condition may have changed.
   */
  follow(serving: () => boolean, opts: FollowOptions): () => void {
    const { logger, signal, recheckMs } = opts;
    const update = () => {
      if (signal.aborted) return;
      const was = this.get();
      const now = serving() ? "SERVING" : "NOT_SERVING";
      this.set(now);
      if (was !== now) logger[now === "SERVING" ? "info" : "warn"]({ health: now }, "health changed");
    };
    update();
    if (recheckMs !== undefined && !signal.aborted) {
      const timer = setInterval(update, recheckMs);
      signal.addEventListener("abort", () => clearInterval(timer), { once: true });
    }
    return update;
  }

  register(router: ConnectRouter): void {
    const toEnum = (s: ServingStatus | undefined) =>
      s === undefined ? Status.SERVICE_UNKNOWN : s === "SERVING" ? Status.SERVING : Status.NOT_SERVING;
    router.service(Health, {
      check: (req) => {
        const status = this.#statuses.get(req.service);
        if (status === undefined) {
          throw new ConnectError(`unknown service ${req.service}`, Code.NotFound);
        }
        return { status: toEnum(status) };
      },
      list: () => ({
        statuses: Object.fromEntries(
          [...this.#statuses].map(([name, s]) => [name, create(HealthCheckResponseSchema, { status: toEnum(s) })]),
        ),
      }),
      watch: async function* (this: void, req, ctx) {
        yield* watchStatus(req.service, ctx.signal);
      },
    });
    const registry = this;
    async function* watchStatus(service: string, signal: AbortSignal) {
      let last: number | undefined;
      while (!signal.aborted) {
        const now = toEnum(registry.#statuses.get(service));
        if (now !== last) {
          last = now;
          yield { status: now };
        }
        await new Promise<void>((resolve) => {
          const wake = () => {
            registry.#watchers.delete(wake);
            signal.removeEventListener("abort", wake);
            resolve();
          };
          registry.#watchers.add(wake);
          signal.addEventListener("abort", wake, { once: true });
        });
      }
    }
  }
}
