/**
 * Counts failed logins per (account, client address). After `maxFailures` within the window,
 * that pair is refused until the window that began with its first failure ends. Kept in memory:
 * one gateway process, and a restart forgives (see README, "Decisions").
 */
export class LoginLimiter {
  readonly #maxFailures: number;
  readonly #windowMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;
  // Insertion-ordered: the oldest windows come first, so trimming is cheap.
  readonly #failures = new Map<string, { count: number; windowEnds: number }>();

  constructor(opts: { maxFailures: number; windowS: number; maxEntries?: number; now?: () => number }) {
    this.#maxFailures = opts.maxFailures;
    this.#windowMs = opts.windowS * 1000;
    this.#maxEntries = opts.maxEntries ?? 100_000;
    this.#now = opts.now ?? Date.now;
  }

  static key(login: string, address: string): string {
    return `${login.toLowerCase()}\u0000${address}`;
  }

  /** Seconds the caller must wait, or 0 when an attempt is allowed. */
  retryAfter(key: string): number {
    const entry = this.#failures.get(key);
    if (!entry) return 0;
    const left = entry.windowEnds - this.#now();
    if (left <= 0) {
      this.#failures.delete(key);
      return 0;
    }
    return entry.count >= this.#maxFailures ? Math.ceil(left / 1000) : 0;
  }

  recordFailure(key: string): void {
    const now = this.#now();
    const entry = this.#failures.get(key);
    if (entry && entry.windowEnds > now) {
      entry.count++;
      return;
    }
    this.#failures.delete(key);
    this.#failures.set(key, { count: 1, windowEnds: now + this.#windowMs });
    // A flood of distinct names must not grow memory without bound: forget the oldest.
    while (this.#failures.size > this.#maxEntries) {
      const oldest = this.#failures.keys().next().value;
      if (oldest === undefined) break;
      this.#failures.delete(oldest);
    }
  }

  recordSuccess(key: string): void {
    this.#failures.delete(key);
  }
}
