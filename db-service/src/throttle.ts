import { inArray, lt, sql } from "drizzle-orm";
import type { Db } from "./db.ts";
import { throttle } from "./schema.ts";

export interface Limit {
  key: string;
  /** Most hits a key may take in one window... */
  max: number;
  /** ...a window that starts with its first hit and lasts this long. */
  windowS: number;
}

export interface Verdict {
  allowed: boolean;
  /** Seconds until the fullest window that refused ends. */
  retryAfterS: number;
}

/**
 * Counts a hit on every key at once, in one statement, and says whether all are still within
 * their limits. The hit is counted before the work it guards (a password check), so parallel
 * attempts each see the others' hits: 40 at once against a limit of 5 let 5 through, not 40.
 * The counts live in PostgreSQL, so every replica of every service shares them.
 */
export async function hit(db: Db, limits: readonly Limit[]): Promise<Verdict> {
  if (limits.length === 0) return { allowed: true, retryAfterS: 0 };
  const fresh = sql`excluded.${sql.identifier("window_ends")}`;
  const rows = await db
    .insert(throttle)
    .values(
      limits.map((l) => ({
        key: l.key,
        hits: 1,
        windowEnds: sql<string>`now() + make_interval(secs => ${l.windowS})`,
      })),
    )
    .onConflictDoUpdate({
      target: throttle.key,
      set: {
        // A window that has ended starts again with this hit.
        hits: sql`CASE WHEN ${throttle.windowEnds} <= now() THEN 1 ELSE ${throttle.hits} + 1 END`,
        windowEnds: sql`CASE WHEN ${throttle.windowEnds} <= now() THEN ${fresh} ELSE ${throttle.windowEnds} END`,
      },
    })
    .returning({
      key: throttle.key,
      hits: throttle.hits,
      secondsLeft: sql<number>`ceil(extract(epoch FROM ${throttle.windowEnds} - now()))::int`,
    });
  let retryAfterS = 0;
  for (const row of rows) {
    const limit = limits.find((l) => l.key === row.key);
    if (limit && row.hits > limit.max) retryAfterS = Math.max(retryAfterS, row.secondsLeft, 1);
  }
  return { allowed: retryAfterS === 0, retryAfterS };
}

/** Forgets the keys' hits: a login that succeeded clears its account's failures. */
export function forget(db: Db, keys: readonly string[]) {
  return db.delete(throttle).where(inArray(throttle.key, [...keys]));
}

/** Takes one hit back from each key: a login that succeeded was no failure of its address. */
export function refund(db: Db, keys: readonly string[]) {
  return db
    .update(throttle)
    .set({ hits: sql`greatest(${throttle.hits} - 1, 0)` })
    .where(inArray(throttle.key, [...keys]));
}

/** Windows that have ended hold nothing worth keeping. */
export function sweepThrottle(db: Db) {
  return db.delete(throttle).where(lt(throttle.windowEnds, sql`now()`));
}
