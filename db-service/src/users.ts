import { createHash } from "node:crypto";
import type { ServiceImpl } from "@connectrpc/connect";
import { Role, type UserService } from "@merch/gen/merch/store/v1/user_pb";
import { ErrorReason, type Reason, rpcError } from "@merch/kit";
import { and, eq, isNull, type SQL, sql } from "drizzle-orm";
import type { PgUpdateSetSource } from "drizzle-orm/pg-core";
import type { LoginLimits } from "./config.ts";
import { timestampFromPg, userToProto } from "./convert.ts";
import { constraintOf, type Database, sqlState } from "./db.ts";
import type { DbMetrics } from "./metrics.ts";
import { burnVerification, hashPassword, verifyPassword } from "./passwords.ts";
import { sessions, users } from "./schema.ts";
import { endAllSessions, newSession, sessionEnded, sessionOpen } from "./sessions.ts";
import { forget, hit, refund } from "./throttle.ts";

// Which unique index a duplicate hit, and the reason the caller gets for it.
const TAKEN: Record<string, { field: string; reason: Reason }> = {
  users_sid_key: { field: "sid", reason: ErrorReason.SID_TAKEN },
  users_username_key: { field: "username", reason: ErrorReason.USERNAME_TAKEN },
  users_email_key: { field: "email", reason: ErrorReason.EMAIL_TAKEN },
};

function alreadyExists(err: unknown): never {
  const taken = sqlState(err) === "23505" ? TAKEN[constraintOf(err) ?? ""] : undefined;
  if (taken) throw rpcError(taken.reason, `${taken.field} is already in use`);
  throw err;
}

const invalidCredentials = () => rpcError(ErrorReason.INVALID_CREDENTIALS, "unknown user or wrong password");
const accountDeactivated = () => rpcError(ErrorReason.ACCOUNT_DEACTIVATED, "the account is deactivated");

// No account has such a name (the CHECKs forbid it), and PostgreSQL could not even compare a NUL.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what this finds
const IMPOSSIBLE_NAME = /[\x00-\x1f\x7f]/;
const MAX_NAME = 50;

export function userService(
  database: Database,
  limits: LoginLimits,
  metrics?: DbMetrics,
): ServiceImpl<typeof UserService> {
  return {
    async registerUser(req) {
      if (req.clientAddress !== "") {
        const verdict = await database.run("throttle.registration", (db) =>
          hit(db, [
            {
              key: `register:address:${req.clientAddress}`,
              max: limits.registerAddressMax,
              windowS: limits.registerWindowS,
            },
          ]),
        );
        if (!verdict.allowed) {
          metrics?.throttled.inc({ limit: "registration" });
          throw rpcError(ErrorReason.TOO_MANY_REGISTRATIONS, "too many accounts registered from this address lately", {
            retryAfterS: verdict.retryAfterS,
          });
        }
      }
      const passwordHash = await hashPassword(req.password);
      const [row] = await database.run("user.insert", (db) =>
        db
          .insert(users)
          .values({ sid: req.sid, username: req.username, email: req.email, passwordHash })
          .returning()
          .catch(alreadyExists),
      );
      if (!row) throw new Error("insert returned no row");
      return { user: userToProto(row) };
    },

    /**
     * Counts the attempt against the account and the address first, then checks the password:
     * see throttle.ts. A success forgives the account's failures and gives the address its hit back.
     */
    async authenticateUser(req) {
      const name = req.login.value ?? "";
      const possible = name.length <= MAX_NAME && !IMPOSSIBLE_NAME.test(name);
      const column = req.login.case === "sid" ? users.sid : users.username;
      const [row] = possible
        ? await database.run("user.lookup", (db) =>
            db.select().from(users).where(sql`lower(${column}) = lower(${name})`),
          )
        : [];
      // One account is one account, named by username or by sid; a name without an account is
      // counted under itself (hashed: any text may arrive, the key must be storable).
      const accountKey = row
        ? `login:account:${row.id}`
        : `login:name:${createHash("sha256").update(name.toLowerCase()).digest("hex")}`;
      const addressKey = req.clientAddress === "" ? undefined : `login:address:${req.clientAddress}`;
      const verdict = await database.run("throttle.login", (db) =>
        hit(db, [
          { key: accountKey, max: limits.accountMaxFailures, windowS: limits.windowS },
          ...(addressKey ? [{ key: addressKey, max: limits.addressMaxFailures, windowS: limits.windowS }] : []),
        ]),
      );
      if (!verdict.allowed) {
        metrics?.throttled.inc({ limit: "login" });
        throw rpcError(ErrorReason.TOO_MANY_ATTEMPTS, "too many failed logins; try again later", {
          retryAfterS: verdict.retryAfterS,
        });
      }
      const ok = row ? await verifyPassword(row.passwordHash, req.password) : await burnVerification(req.password);
      if (!row || !ok) throw invalidCredentials();
      const opened = await database.run("session.open", (db) =>
        db.transaction(async (tx) => {
          await forget(tx, [accountKey]);
          if (addressKey) await refund(tx, [addressKey]);
          if (!row.isActive) return undefined;
          const [session] = await tx
            .insert(sessions)
            .values(newSession(row.id))
            .returning({ id: sessions.id, expiresAt: sessions.expiresAt });
          return session;
        }),
      );
      if (!opened) throw accountDeactivated();
      return {
        user: userToProto(row),
        sessionId: opened.id,
        sessionExpiresAt: timestampFromPg(opened.expiresAt),
      };
    },

    async endSession(req) {
      const { session } = req;
      const [ended] = await database.run("session.end", (db) =>
        db
          .update(sessions)
          .set({ endedAt: sql`now()` })
          .where(
            and(
              eq(sessions.id, session?.sessionId ?? ""),
              eq(sessions.userId, session?.userId ?? 0),
              isNull(sessions.endedAt),
            ),
          )
          .returning({ id: sessions.id }),
      );
      // A session that has ended (or never was) is no session to end: its token is no good.
      if (!ended) throw sessionEnded();
      return {};
    },

    async getUser(req) {
      const [row] = await database.run("user.get", (db) =>
        db
          .select()
          .from(users)
          .where(and(eq(users.id, req.session?.userId ?? 0), sessionOpen(db, req.session))),
      );
      if (!row) throw sessionEnded();
      return { user: userToProto(row) };
    },

    async updateUser(req) {
      const userId = req.session?.userId ?? 0;
      const [current] = await database.run("user.get", (db) =>
        db
          .select()
          .from(users)
          .where(and(eq(users.id, userId), sessionOpen(db, req.session))),
      );
      if (!current) throw sessionEnded();
      if (req.password !== undefined && !(await verifyPassword(current.passwordHash, req.currentPassword ?? ""))) {
        throw rpcError(ErrorReason.WRONG_CURRENT_PASSWORD, "current_password is wrong");
      }
      const changes: PgUpdateSetSource<typeof users> = { updatedAt: sql`now()` };
      if (req.username !== undefined) changes.username = req.username;
      if (req.email !== undefined) changes.email = req.email;
      if (req.password !== undefined) changes.passwordHash = await hashPassword(req.password);
      const row = await database.run("user.update", (db) =>
        db.transaction(async (tx) => {
          // Matching the hash we verified against refuses a password change that raced another.
          const unchanged: SQL[] = [eq(users.id, userId), eq(users.passwordHash, current.passwordHash)];
          const [updated] = await tx
            .update(users)
            .set(changes)
            .where(and(...unchanged, sessionOpen(tx, req.session)))
            .returning()
            .catch(alreadyExists);
          // A new password ends every session of the account, this one too.
          if (updated && req.password !== undefined) await endAllSessions(tx, userId);
          return updated;
        }),
      );
      if (!row) throw rpcError(ErrorReason.CONFLICT, "the account changed meanwhile; nothing was changed, retry");
      return { user: userToProto(row) };
    },

    async setUserRole(req) {
      const role = req.role === Role.STAFF ? "staff" : "customer";
      const [before] = await database.run("user.role.get", (db) =>
        db.select({ role: users.role }).from(users).where(sql`lower(${users.username}) = lower(${req.username})`),
      );
      if (!before) throw rpcError(ErrorReason.USERNAME_NOT_FOUND, `no account is named ${req.username}`);
      const [row] = await database.run("user.role.set", (db) =>
        db
          .update(users)
          .set({ role, updatedAt: sql`now()` })
          .where(sql`lower(${users.username}) = lower(${req.username})`)
          .returning(),
      );
      if (!row) throw rpcError(ErrorReason.USERNAME_NOT_FOUND, `no account is named ${req.username}`);
      return { user: userToProto(row), role: req.role, changed: before.role !== role };
    },

    async deactivateUser(req) {
      const userId = req.session?.userId ?? 0;
      const row = await database.run("user.deactivate", (db) =>
        db.transaction(async (tx) => {
          const [deactivated] = await tx
            .update(users)
            .set({ isActive: false, deactivatedAt: sql`now()`, updatedAt: sql`now()` })
            .where(and(eq(users.id, userId), isNull(users.deactivatedAt), sessionOpen(tx, req.session)))
            .returning();
          if (deactivated) await endAllSessions(tx, userId);
          return deactivated;
        }),
      );
      if (!row) throw sessionEnded();
      return { user: userToProto(row) };
    },
  };
}
