// Keeps the store's processes running, as an init system would: `npm start` supervises the three
// services and the embedded PostgreSQL with this. Compose does the same with `restart:`.

export interface Supervised {
  readonly name: string;
  /** Resolves when the current process ends, however it ends. */
  exited(): Promise<unknown>;
  /** Starts it again after it ended. */
  restart(): Promise<void> | void;
}

export interface SupervisorOptions {
  /** First wait before a restart; it doubles with each restart in a row, up to maxDelayMs. */
  minDelayMs?: number;
  maxDelayMs?: number;
  /** A process that stayed up this long starts again from minDelayMs. */
  stableAfterMs?: number;
  /**
   * More restarts than this within windowMs and the process is failing: it is still restarted
   * (at the capped delay), the others keep serving, and onFailing says so loudly. A supervisor
   * that gave up would let one request that kills a service stop the whole store.
   */
  maxRestarts?: number;
  windowMs?: number;
  log: (message: string) => void;
  /** Called on each restart of a process that keeps failing, with its restarts in the window. */
  onFailing?: (name: string, recentRestarts: number) => void;
  /** Called after each restart, with the counts so far (for the store's state file). */
  onRestart?: (counts: Readonly<Record<string, number>>) => void;
}

export class Supervisor {
  readonly #opts: Required<Omit<SupervisorOptions, "onRestart" | "onFailing">> &
    Pick<SupervisorOptions, "onRestart" | "onFailing">;
  readonly #counts: Record<string, number> = {};
  #stopping = false;
  readonly #timers = new Set<NodeJS.Timeout>();

  constructor(opts: SupervisorOptions) {
    this.#opts = {
      minDelayMs: 500,
      maxDelayMs: 30_000,
      stableAfterMs: 60_000,
      maxRestarts: 10,
      windowMs: 10 * 60_000,
      ...opts,
    };
  }

  /** Restarts in the order given. */
  get restarts(): Readonly<Record<string, number>> {
    return this.#counts;
  }

  watch(process: Supervised): void {
    this.#counts[process.name] = 0;
    let delay = this.#opts.minDelayMs;
    const recent: number[] = [];
    const follow = (startedAt: number) => {
      void process.exited().then((how) => {
        if (this.#stopping) return;
        const now = Date.now();
        if (now - startedAt >= this.#opts.stableAfterMs) delay = this.#opts.minDelayMs;
        recent.push(now);
        while (recent.length > 0 && now - (recent[0] ?? now) > this.#opts.windowMs) recent.shift();
        if (recent.length > this.#opts.maxRestarts) {
          this.#opts.log(
            `!!! ${process.name} KEEPS FAILING: ended (${String(how)}) ${recent.length} times within ${this.#opts.windowMs / 60_000} min. ` +
              `The rest of the store keeps serving; restarting it in ${delay} ms (never more than ${this.#opts.maxDelayMs} ms apart). ` +
              "Look at its log above for the cause.",
          );
          this.#opts.onFailing?.(process.name, recent.length);
        } else {
          this.#opts.log(`${process.name} ended unexpectedly (${String(how)}); restarting in ${delay} ms`);
        }
        const timer = setTimeout(async () => {
          this.#timers.delete(timer);
          if (this.#stopping) return;
          try {
            await process.restart();
            this.#counts[process.name] = (this.#counts[process.name] ?? 0) + 1;
            this.#opts.log(`${process.name} restarted (${this.#counts[process.name]} restarts so far)`);
            this.#opts.onRestart?.(this.#counts);
          } catch (err) {
            this.#opts.log(`${process.name} did not start again: ${err instanceof Error ? err.message : String(err)}`);
          }
          follow(Date.now());
        }, delay);
        this.#timers.add(timer);
        delay = Math.min(delay * 2, this.#opts.maxDelayMs);
      });
    };
    follow(Date.now());
  }

  /** No more restarts: the processes are being stopped on purpose. */
  stop(): void {
    this.#stopping = true;
    for (const timer of this.#timers) clearTimeout(timer);
  }
}

/** Watches every process of a running stack: the three services and the embedded PostgreSQL. */
export function superviseStack(
  stack: {
    services: Record<string, { name: string; exited(): Promise<unknown>; start(): void }>;
    postgres?: { exited(): Promise<unknown>; start(): Promise<void> } | undefined;
  },
  opts: SupervisorOptions,
): Supervisor {
  const supervisor = new Supervisor(opts);
  for (const service of Object.values(stack.services)) {
    supervisor.watch({ name: service.name, exited: () => service.exited(), restart: () => service.start() });
  }
  const postgres = stack.postgres;
  if (postgres)
    supervisor.watch({ name: "postgres", exited: () => postgres.exited(), restart: () => postgres.start() });
  return supervisor;
}
