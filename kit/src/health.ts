import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as Status,
} from "@merch/gen/grpc/health/v1/health_pb";

export type ServingStatus = "SERVING" | "NOT_SERVING";

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
