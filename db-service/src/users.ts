import { Code, type ServiceImpl } from "@connectrpc/connect";
import type { UserService } from "@merch/gen/merch/store/v1/user_pb";
import { rpcError } from "@merch/kit/errors";
import { and, eq, sql } from "drizzle-orm";
import type { PgUpdateSetSource } from "drizzle-orm/pg-core";
import { userToProto } from "./convert.ts";
import { constraintOf, type Db, sqlState } from "./db.ts";
import { burnVerification, hashPassword, verifyPassword } from "./passwords.ts";
import { accountDeactivated, userNotFound } from "./refusals.ts";
import { type UserRow, users } from "./schema.ts";
import { Check } from "./validation.ts";

// Which unique index a duplicate hit, and the reason the caller gets for it.
const TAKEN: Record<string, { field: string; reason: string }> = {
  users_sid_key: { field: "sid", reason: "sid_taken" },
  users_username_key: { field: "username", reason: "username_taken" },
  users_email_key: { field: "email", reason: "email_taken" },
};

function alreadyExists(err: unknown): never {
  const taken = sqlState(err) === "23505" ? TAKEN[constraintOf(err) ?? ""] : undefined;
  if (taken) {
    throw rpcError(Code.AlreadyExists, taken.reason, `${taken.field} is already in use`);
  }
  throw err;
}

export function userService(db: Db): ServiceImpl<typeof UserService> {
  const byId = db
    .select()
    .from(users)
    .where(eq(users.id, sql.placeholder("id")))
    .prepare("user_by_id");
  async function load(id: number): Promise<UserRow> {
    const [row] = await byId.execute({ id });
    if (!row) throw userNotFound(id);
    return row;
  }

  return {
    async registerUser(req) {
      new Check()
        .sid("sid", req.sid)
        .username("username", req.username)
        .email("email", req.email)
        .password("password", req.password)
        .done();
      const passwordHash = await hashPassword(req.password);
      const [row] = await db
        .insert(users)
        .values({ sid: req.sid, username: req.username, email: req.email, passwordHash })
        .returning()
        .catch(alreadyExists);
      if (!row) throw new Error("insert returned no row");
      return { user: userToProto(row) };
    },

    async authenticateUser(req) {
      const check = new Check().require("login", req.login.case !== undefined, "username or sid is required");
      if (req.login.case === "username") check.require("username", req.login.value !== "", "must not be empty");
      if (req.login.case === "sid") check.require("sid", req.login.value !== "", "must not be empty");
      check.require("password", req.password !== "", "is required").done();
      // An over-long name cannot exist; answering without a query keeps junk off the database.
      const name = req.login.value ?? "";
      const column = req.login.case === "sid" ? users.sid : users.username;
      const [row] =
        name.length > 50 || req.password.length > 1024
          ? []
          : await db.select().from(users).where(sql`lower(${column}) = lower(${name})`);
      const ok = row ? await verifyPassword(row.passwordHash, req.password) : await burnVerification(req.password);
      if (!row || !ok) {
        throw rpcError(Code.Unauthenticated, "invalid_credentials", "unknown user or wrong password");
      }
      if (!row.isActive) throw accountDeactivated();
      return { user: userToProto(row) };
    },

    async getUser(req) {
      new Check().id("user_id", req.userId).done();
      return { user: userToProto(await load(req.userId)) };
    },

    async updateUser(req) {
      const check = new Check().id("user_id", req.userId);
      if (req.username !== undefined) check.username("username", req.username);
      if (req.email !== undefined) check.email("email", req.email);
      if (req.password !== undefined) {
        check
          .password("password", req.password)
          .require("current_password", req.currentPassword !== undefined, "is required to change the password");
      }
      check
        .require(
          "body",
          req.username !== undefined || req.email !== undefined || req.password !== undefined,
          "give at least one of username, email, password",
        )
        .done();
      const current = await load(req.userId);
      if (!current.isActive) throw accountDeactivated();
      if (req.currentPassword !== undefined && !(await verifyPassword(current.passwordHash, req.currentPassword))) {
        throw rpcError(Code.PermissionDenied, "wrong_current_password", "current_password is wrong");
      }
      const changes: PgUpdateSetSource<typeof users> = { updatedAt: sql`now()` };
      if (req.username !== undefined) changes.username = req.username;
      if (req.email !== undefined) changes.email = req.email;
      if (req.password !== undefined) changes.passwordHash = await hashPassword(req.password);
      // Matching the hash we verified against refuses a password change that raced another.
      const [row] = await db
        .update(users)
        .set(changes)
        .where(and(eq(users.id, req.userId), eq(users.passwordHash, current.passwordHash), eq(users.isActive, true)))
        .returning()
        .catch(alreadyExists);
      if (!row) throw rpcError(Code.Aborted, "concurrent_update", "the account changed meanwhile, retry");
      return { user: userToProto(row) };
    },

    async deactivateUser(req) {
      new Check().id("user_id", req.userId).done();
      const [row] = await db
        .update(users)
        .set({ isActive: false, deactivatedAt: sql`now()`, updatedAt: sql`now()` })
        .where(and(eq(users.id, req.userId), eq(users.isActive, true)))
        .returning();
      if (row) return { user: userToProto(row) };
      // The user exists (load throws otherwise), so it was deactivated already: the caller's
      // session ended with that, and the call is refused like any other of that account.
      await load(req.userId);
      throw accountDeactivated();
    },
  };
}
