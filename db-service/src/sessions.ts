import { randomUUID } from "node:crypto";
import type { Session } from "@merch/gen/merch/store/v1/session_pb";
import { ErrorReason, rpcError } from "@merch/kit";
import { and, eq, exists, gt, isNull, lt, type SQL, sql } from "drizzle-orm";
import type { Db } from "./db.ts";
import { sessions, users } from "./schema.ts";
import type { Tx } from "./write-batcher.ts";

/** A session lives as long as the token that carries it (24 hours). */
const SESSION_LIFETIME_S = 24 * 60 * 60;

export const sessionEnded = () =>
  rpcError(ErrorReason.INVALID_TOKEN, "the session has ended (logged out, password changed or account deactivated)");

/**
 * The condition that the call's session is open and its account active: part of the WHERE of the
 * statement that does the call's work, so the check costs no round trip of its own.
 */
export function sessionOpen(db: Db | Tx, session: Session | undefined, role?: "staff"): SQL {
  if (session === undefined) return sql`false`;
  return exists(
    db
      .select({ one: sql`1` })
      .from(sessions)
      .innerJoin(users, eq(users.id, sessions.userId))
      .where(
        and(
          eq(sessions.id, session.sessionId),
          eq(sessions.userId, session.userId),
          isNull(sessions.endedAt),
          gt(sessions.expiresAt, sql`now()`),
          eq(users.isActive, true),
          role === undefined ? undefined : eq(users.role, role),
        ),
      ),
  );
}

/** Throws invalid_token unless the session is open: for when the work found nothing to do. */
export async function requireSession(db: Db, session: Session | undefined): Promise<void> {
  const [open] = await db
    .select({ id: users.id })
    .from(users)
    .where(and(eq(users.id, session?.userId ?? 0), sessionOpen(db, session)));
  if (!open) throw sessionEnded();
}

export const staffOnly = () => rpcError(ErrorReason.STAFF_ONLY, "only a staff account may do this");

/**
 * The condition that the call's session is open and its account staff: a revoked role or a
 * deactivated account stops the very next call, on every gateway.
 */
export function staffSessionOpen(db: Db | Tx, session: Session | undefined): SQL {
  return sessionOpen(db, session, "staff");
}

/** Throws invalid_token unless the session is open, staff_only unless its account is staff. */
export async function requireStaff(db: Db | Tx, session: Session | undefined): Promise<void> {
  const [open] = await db
    .select({ role: users.role })
    .from(users)
    .where(and(eq(users.id, session?.userId ?? 0), sessionOpen(db, session)));
  if (!open) throw sessionEnded();
  if (open.role !== "staff") throw staffOnly();
}

/** A new session of the account; its id goes into the token as jti. */
export function newSession(userId: number) {
  return {
    id: randomUUID(),
    userId,
    expiresAt: sql<string>`now() + make_interval(secs => ${SESSION_LIFETIME_S})`,
  };
}

/** Ends every open session of the account (a password change, a deactivation). */
export function endAllSessions(db: Db | Tx, userId: number) {
  return db
    .update(sessions)
    .set({ endedAt: sql`now()` })
    .where(and(eq(sessions.userId, userId), isNull(sessions.endedAt)));
}

/** Expired sessions are of no use to anyone: swept now and then. */
export function sweepSessions(db: Db) {
  return db.delete(sessions).where(lt(sessions.expiresAt, sql`now()`));
}
