import { lt, sql } from "drizzle-orm";
import type { Db } from "./db.ts";
import { knownLogins, throttle } from "./schema.ts";

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

/**
 * What a password check may do, given wrong passwords already counted (`hits`) and checks under
 * way (`pending`) on each key: go ahead (a check is reserved on every key), wait for the checks
 * under way to end, or stop, for `retryAfterS`, because the key has had its wrong passwords.
 */
export type Reservation = { state: "reserved" } | { state: "busy" } | { state: "full"; retryAfterS: number };

/**
 * Reserves one password check on every key, or on none: a key takes a check while its wrong
 * passwords plus the checks under way stay below its limit. So 40 parallel guesses against a
 * limit of 5 get 5 checks; the rest are refused once those 5 are counted wrong, never checked.
 * A refused attempt counts nothing. Each key is one statement of its own, in key order, so a
 * reservation never holds two row locks at once and can never deadlock with a settlement.
 */
export async function reserveCheck(db: Db, limits: readonly Limit[]): Promise<Reservation> {
  const ended = sql`${throttle.windowEnds} <= now()`;
  const reserved: string[] = [];
  for (const l of [...limits].sort((a, b) => (a.key < b.key ? -1 : 1))) {
    const rows = await db
      .insert(throttle)
      .values({ key: l.key, hits: 0, pending: 1, windowEnds: sql<string>`now() + make_interval(secs => ${l.windowS})` })
      .onConflictDoUpdate({
        target: throttle.key,
        set: {
          hits: sql`CASE WHEN ${ended} THEN 0 ELSE ${throttle.hits} END`,
          pending: sql`CASE WHEN ${ended} THEN 1 ELSE ${throttle.pending} + 1 END`,
          windowEnds: sql`CASE WHEN ${ended} THEN excluded.${sql.identifier("window_ends")} ELSE ${throttle.windowEnds} END`,
        },
        setWhere: sql`${ended} OR ${throttle.hits} + ${throttle.pending} < ${l.max}`,
      })
      .returning({ key: throttle.key });
    if (rows.length > 0) {
      reserved.push(l.key);
      continue;
    }
    // Refused: what this key says, and the keys reserved before it are given back.
    const [row] = await db
      .select({
        hits: throttle.hits,
        secondsLeft: sql<number>`ceil(extract(epoch FROM ${throttle.windowEnds} - now()))::int`,
      })
      .from(throttle)
      .where(sql`${throttle.key} = ${l.key}`);
    if (reserved.length > 0) await release(db, reserved);
    return row && row.hits >= l.max ? { state: "full", retryAfterS: Math.max(row.secondsLeft, 1) } : { state: "busy" };
  }
  return { state: "reserved" };
}

/** Gives reserved checks back, one key per statement, in key order. */
async function release(db: Db, keys: readonly string[]): Promise<void> {
  for (const key of [...keys].sort()) {
    await db
      .update(throttle)
      .set({ pending: sql`greatest(${throttle.pending} - 1, 0)` })
      .where(sql`${throttle.key} = ${key}`);
  }
}

/**
 * Ends a reserved check. A wrong password counts on every key (a key's window starts again
 * with its first wrong password); a right one counts nothing, and clears the `cleared` keys
 * (the owner's own typos).
 */
export async function settleCheck(
  db: Db,
  keys: readonly string[],
  wrong: boolean,
  windowS: number,
  cleared: readonly string[] = [],
): Promise<void> {
  // One key per statement, in key order: two settlements in one transaction each lock the keys in
  // the same order, so they never deadlock (a small table is scanned in heap order otherwise).
  for (const key of [...keys].sort()) {
    if (!wrong && cleared.includes(key)) {
      await db.delete(throttle).where(sql`${throttle.key} = ${key}`);
      continue;
    }
    await db
      .update(throttle)
      .set({
        pending: sql`greatest(${throttle.pending} - 1, 0)`,
        ...(wrong
          ? {
              hits: sql`${throttle.hits} + 1`,
              windowEnds: sql`CASE WHEN ${throttle.hits} = 0 THEN now() + make_interval(secs => ${windowS}) ELSE ${throttle.windowEnds} END`,
            }
          : {}),
      })
      .where(sql`${throttle.key} = ${key}`);
  }
}

/** Windows that have ended hold nothing worth keeping, nor addresses not logged in from for KNOWN_FOR_DAYS. */
export async function sweepThrottle(db: Db, knownForDays: number) {
  await db.delete(throttle).where(lt(throttle.windowEnds, sql`now()`));
  await db.delete(knownLogins).where(lt(knownLogins.lastSuccess, sql`now() - make_interval(days => ${knownForDays})`));
}
