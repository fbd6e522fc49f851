import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { type DbStack, startDbStack, TRANSPORTS } from "@merch/devstack/db-stack";
import { rejectsFields, rejectsWith } from "@merch/devstack/rpc-assert";
import postgres from "postgres";

let stack: DbStack;
before(async () => {
  stack = await startDbStack();
});
after(() => stack?.stop());

TRANSPORTS.forEach((transport, i) => {
  describe(`UserService over ${transport}`, () => {
    const users = () => stack.clients(transport).users;
    // Distinct accounts per transport: both suites share one database.
    const alice = {
      sid: `1211000${i}`,
      username: `alice_${i}`,
      email: `alice${i}@example.com`,
      password: "correct horse battery",
    };

    test("registers an active user and never returns the password or its hash", async () => {
      const { user } = await users().registerUser(alice);
      assert.ok(user && user.id > 0);
      assert.equal(user.sid, alice.sid);
      assert.equal(user.username, alice.username);
      assert.equal(user.email, alice.email);
      assert.equal(user.isActive, true);
      assert.ok(user.createdAt);
      const wire = JSON.stringify(user, (_k, v) => (typeof v === "bigint" ? String(v) : v));
      assert.ok(!wire.includes(alice.password) && !wire.includes("argon2"));
    });

    test("stores an argon2id hash with OWASP parameters (m=9 MiB, t=4, p=1)", async () => {
      const sql = postgres(stack.pg.url, { max: 1 });
      try {
        const [row] = await sql`SELECT password_hash FROM users WHERE sid = ${alice.sid}`;
        assert.match(String(row?.password_hash), /^\$argon2id\$v=19\$m=9216,t=4,p=1\$/);
      } finally {
        await sql.end();
      }
    });

    test("a taken sid, username or email is ALREADY_EXISTS naming the field, case-insensitively", async () => {
      const other = {
        sid: `9${i}9`,
        username: `other_${i}`,
        email: `other${i}@example.com`,
        password: "another secret",
      };
      await rejectsWith(users().registerUser({ ...other, sid: alice.sid }), Code.AlreadyExists, "sid_taken");
      await rejectsWith(
        users().registerUser({ ...other, username: alice.username.toUpperCase() }),
        Code.AlreadyExists,
        "username_taken",
      );
      await rejectsWith(
        users().registerUser({ ...other, email: alice.email.toUpperCase() }),
        Code.AlreadyExists,
        "email_taken",
      );
    });

    test("authenticates by username or by sid", async () => {
      const byName = await users().authenticateUser({
        login: { case: "username", value: alice.username },
        password: alice.password,
      });
      assert.equal(byName.user?.sid, alice.sid);
      const bySid = await users().authenticateUser({
        login: { case: "sid", value: alice.sid },
        password: alice.password,
      });
      assert.equal(bySid.user?.username, alice.username);
    });

    test("an unknown user and a wrong password are the same UNAUTHENTICATED answer", async () => {
      const unknown = await rejectsWith(
        users().authenticateUser({ login: { case: "username", value: "nobody_here" }, password: alice.password }),
        Code.Unauthenticated,
        "invalid_credentials",
      );
      const wrong = await rejectsWith(
        users().authenticateUser({ login: { case: "username", value: alice.username }, password: "wrong password" }),
        Code.Unauthenticated,
        "invalid_credentials",
      );
      assert.equal(unknown.rawMessage, wrong.rawMessage);
    });

    test("authentication without a login or password is INVALID_ARGUMENT", async () => {
      await rejectsFields(users().authenticateUser({ password: "x" }), ["login"]);
      await rejectsFields(users().authenticateUser({ login: { case: "sid", value: alice.sid }, password: "" }), [
        "password",
      ]);
    });

    test("gets a user; an unknown one is NOT_FOUND user_not_found", async () => {
      const { user } = await users().authenticateUser({
        login: { case: "sid", value: alice.sid },
        password: alice.password,
      });
      assert.ok(user);
      const got = await users().getUser({ userId: user.id });
      assert.equal(got.user?.email, alice.email);
      await rejectsWith(users().getUser({ userId: 987654 }), Code.NotFound, "user_not_found");
    });

    test("updates username and email, and the password only with the current one", async () => {
      const { user } = await users().authenticateUser({
        login: { case: "sid", value: alice.sid },
        password: alice.password,
      });
      assert.ok(user);
      const renamed = await users().updateUser({
        userId: user.id,
        username: `alicia_${i}`,
        email: `alicia${i}@example.com`,
      });
      assert.equal(renamed.user?.username, `alicia_${i}`);
      assert.equal(renamed.user?.email, `alicia${i}@example.com`);

      await rejectsFields(users().updateUser({ userId: user.id, password: "a new password" }), ["current_password"]);
      await rejectsWith(
        users().updateUser({ userId: user.id, password: "a new password", currentPassword: "not it at all" }),
        Code.PermissionDenied,
        "wrong_current_password",
      );
      await users().updateUser({ userId: user.id, password: "a new password", currentPassword: alice.password });
      await rejectsWith(
        users().authenticateUser({ login: { case: "sid", value: alice.sid }, password: alice.password }),
        Code.Unauthenticated,
        "invalid_credentials",
      );
      const again = await users().authenticateUser({
        login: { case: "sid", value: alice.sid },
        password: "a new password",
      });
      assert.equal(again.user?.id, user.id);
    });

    test("an empty or invalid update is INVALID_ARGUMENT; a taken name is ALREADY_EXISTS", async () => {
      const { user } = await users().getUser({ userId: 1 });
      assert.ok(user);
      await rejectsFields(users().updateUser({ userId: user.id }), ["body"]);
      await rejectsFields(users().updateUser({ userId: user.id, username: "x", email: "not-an-email" }), [
        "username",
        "email",
      ]);
      const taker = await users().registerUser({
        sid: `77${i}`,
        username: `taker_${i}`,
        email: `taker${i}@example.com`,
        password: "taker password",
      });
      assert.ok(taker.user);
      await rejectsWith(
        users().updateUser({ userId: taker.user.id, username: user.username }),
        Code.AlreadyExists,
        "username_taken",
      );
    });

    test("deactivation keeps the row, refuses login as such, and refuses every later call of the account", async () => {
      const carol = {
        sid: `55${i}`,
        username: `carol_${i}`,
        email: `carol${i}@example.com`,
        password: "carol password",
      };
      const { user } = await users().registerUser(carol);
      assert.ok(user);
      const first = await users().deactivateUser({ userId: user.id });
      assert.equal(first.user?.isActive, false);
      await rejectsWith(users().deactivateUser({ userId: user.id }), Code.PermissionDenied, "account_deactivated");
      await rejectsWith(users().deactivateUser({ userId: 987_654 }), Code.NotFound, "user_not_found");
      const kept = await users().getUser({ userId: user.id });
      assert.equal(kept.user?.isActive, false);
      await rejectsWith(
        users().authenticateUser({ login: { case: "username", value: carol.username }, password: carol.password }),
        Code.PermissionDenied,
        "account_deactivated",
      );
      // A wrong password on a deactivated account says nothing about the account.
      await rejectsWith(
        users().authenticateUser({ login: { case: "username", value: carol.username }, password: "wrong guess!" }),
        Code.Unauthenticated,
        "invalid_credentials",
      );
      await rejectsWith(
        users().updateUser({ userId: user.id, email: `carol${i}@new.example.com` }),
        Code.PermissionDenied,
        "account_deactivated",
      );
    });
  });
});
