import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { UserService } from "@merch/gen/merch/store/v1/user_pb";
import { reasonName, reasonOf, retryAfterOf, sendServiceCredential } from "@merch/kit";
import { rejectsFields, rejectsWith } from "@merch/testkit";
import postgres from "postgres";
import { type DbStack, newUser, sessionOf, signIn, startDbStack, TRANSPORTS } from "./test-support/index.ts";

let stack: DbStack;
before(async () => {
  // Windows of their real length: the tests end them in the table instead of waiting.
  stack = await startDbStack({ LOGIN_ADDRESS_MAX_FAILURES: "12", REGISTER_ADDRESS_MAX: "4" });
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
    const aliceLogin = (password = alice.password) =>
      users().authenticateUser({ login: { case: "sid", value: alice.sid }, password });

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

    test("authenticates by username or by sid, opening a session each time", async () => {
      const byName = await users().authenticateUser({
        login: { case: "username", value: alice.username },
        password: alice.password,
      });
      assert.equal(byName.user?.sid, alice.sid);
      const bySid = await aliceLogin();
      assert.equal(bySid.user?.username, alice.username);
      assert.match(bySid.sessionId, /^[0-9a-f-]{36}$/);
      assert.notEqual(byName.sessionId, bySid.sessionId);
      const left = Number(bySid.sessionExpiresAt?.seconds) - Date.now() / 1000;
      assert.ok(left > 86_300 && left <= 86_400, `a session lives 24 hours (${left} s left)`);
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

    test("a name that cannot exist (a NUL, a control character, too long) is a failed login, never an error", async () => {
      for (const value of ["al\u0000ice", "bob\u0007", "x".repeat(300)]) {
        await rejectsWith(
          users().authenticateUser({ login: { case: "username", value }, password: "whatever it is" }),
          Code.Unauthenticated,
          "invalid_credentials",
        );
      }
    });

    test("authentication without a login or password is INVALID_ARGUMENT", async () => {
      await rejectsFields(users().authenticateUser({ password: "x" }), ["login"]);
      await rejectsFields(users().authenticateUser({ login: { case: "sid", value: alice.sid }, password: "" }), [
        "password",
      ]);
    });

    test("gets the session's user; an ended or foreign session is UNAUTHENTICATED invalid_token", async () => {
      const res = await aliceLogin();
      const session = { userId: res.user?.id ?? 0, sessionId: res.sessionId };
      const got = await users().getUser({ session });
      assert.equal(got.user?.email, alice.email);
      // Another account's id with this session, or a session that never was.
      await rejectsWith(
        users().getUser({ session: { ...session, userId: 987654 } }),
        Code.Unauthenticated,
        "invalid_token",
      );
      await rejectsWith(
        users().getUser({ session: { ...session, sessionId: randomUUID() } }),
        Code.Unauthenticated,
        "invalid_token",
      );
      await users().endSession({ session });
      await rejectsWith(users().getUser({ session }), Code.Unauthenticated, "invalid_token");
      // An ended session cannot be ended again: its token is no good for anything.
      await rejectsWith(users().endSession({ session }), Code.Unauthenticated, "invalid_token");
      await rejectsWith(
        users().endSession({ session: { ...session, sessionId: randomUUID() } }),
        Code.Unauthenticated,
        "invalid_token",
      );
    });

    test("updates username and email; the password only with the current one, ending every session", async () => {
      const first = await aliceLogin();
      const second = await aliceLogin();
      const session = { userId: first.user?.id ?? 0, sessionId: first.sessionId };
      const other = { userId: session.userId, sessionId: second.sessionId };
      const renamed = await users().updateUser({ session, username: `alicia_${i}`, email: `alicia${i}@example.com` });
      assert.equal(renamed.user?.username, `alicia_${i}`);
      assert.equal(renamed.user?.email, `alicia${i}@example.com`);
      // Renaming ends nothing.
      await users().getUser({ session: other });

      await rejectsFields(users().updateUser({ session, password: "a new password" }), ["current_password"]);
      await rejectsWith(
        users().updateUser({ session, password: "a new password", currentPassword: "not it at all" }),
        Code.PermissionDenied,
        "wrong_current_password",
      );
      await users().updateUser({ session, password: "a new password", currentPassword: alice.password });
      await rejectsWith(users().getUser({ session }), Code.Unauthenticated, "invalid_token");
      await rejectsWith(users().getUser({ session: other }), Code.Unauthenticated, "invalid_token");
      await rejectsWith(aliceLogin(), Code.Unauthenticated, "invalid_credentials");
      const again = await aliceLogin("a new password");
      assert.equal(again.user?.id, session.userId);
    });

    test("an empty or invalid update is INVALID_ARGUMENT; a taken name is ALREADY_EXISTS", async () => {
      const me = sessionOf(await newUser(stack.clients(transport), `upd${i}`));
      await rejectsFields(users().updateUser({ session: me }), ["body"]);
      await rejectsFields(users().updateUser({ session: me, username: "x", email: "not-an-email" }), [
        "username",
        "email",
      ]);
      await rejectsFields(users().updateUser({ session: me, password: "has a\u0000NUL", currentPassword: "x" }), [
        "password",
      ]);
      await rejectsWith(
        users().updateUser({ session: me, username: `alicia_${i}` }),
        Code.AlreadyExists,
        "username_taken",
      );
    });

    test("deactivation keeps the row, ends every session, and refuses login as such", async () => {
      const carol = {
        sid: `55${i}`,
        username: `carol_${i}`,
        email: `carol${i}@example.com`,
        password: "carol password",
      };
      await users().registerUser(carol);
      const one = sessionOf(await signIn(stack.clients(transport), carol.username, carol.password));
      const two = sessionOf(await signIn(stack.clients(transport), carol.username, carol.password));
      const first = await users().deactivateUser({ session: one });
      assert.equal(first.user?.isActive, false);
      for (const session of [one, two]) {
        await rejectsWith(users().getUser({ session }), Code.Unauthenticated, "invalid_token");
        await rejectsWith(users().deactivateUser({ session }), Code.Unauthenticated, "invalid_token");
      }
      const sql = postgres(stack.pg.url, { max: 1 });
      try {
        const [row] = await sql`SELECT is_active FROM users WHERE sid = ${carol.sid}`;
        assert.equal(row?.is_active, false, "the row is kept");
      } finally {
        await sql.end();
      }
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
    });
  });
});

describe("login throttling, shared by every caller through PostgreSQL", () => {
  const users = () => stack.clients("gRPC over h2c").users;
  const login = (value: string, password: string, clientAddress: string, kind: "username" | "sid" = "username") =>
    users().authenticateUser({ login: { case: kind, value }, password, clientAddress });
  /** The outcome of each call: "ok", or the reason it was refused. */
  const outcomes = (calls: Promise<unknown>[]) =>
    Promise.allSettled(calls).then((all) =>
      all.map((a) => {
        if (a.status === "fulfilled") return "ok";
        const reason = reasonOf(ConnectError.from(a.reason));
        return reason === undefined ? String(a.reason) : reasonName(reason);
      }),
    );
  const tally = (list: string[]) =>
    Object.fromEntries([...new Set(list)].sort().map((r) => [r, list.filter((x) => x === r).length]));
  /** Ends every window of the account's keys at once: what waiting LOGIN_WINDOW_S would do. */
  const endWindows = async (userId: number) => {
    const sql = postgres(stack.pg.url, { max: 1 });
    try {
      await sql`UPDATE throttle SET window_ends = now() WHERE key LIKE ${`login:account:${userId}%`}`;
    } finally {
      await sql.end();
    }
  };
  const wrongCounted = async (userId: number) => {
    const sql = postgres(stack.pg.url, { max: 1 });
    try {
      const rows = await sql<{ key: string; hits: number; pending: number }[]>`
        SELECT key, hits, pending FROM throttle WHERE key LIKE ${`login:account:${userId}%`} ORDER BY key`;
      return rows.map((r) => ({
        key: r.key.replace(`login:account:${userId}`, "account"),
        hits: r.hits,
        pending: r.pending,
      }));
    } finally {
      await sql.end();
    }
  };

  test("40 wrong passwords at once: at most 5 are checked, the rest and then a stranger's right one are throttled", async () => {
    const dave = await newUser(stack.clients("gRPC over h2c"), "dave");
    const answers = await outcomes(
      Array.from({ length: 40 }, (_, n) => login(dave.username, `wrong guess ${n}`, "10.1.0.1")),
    );
    assert.deepEqual(tally(answers), { invalid_credentials: 5, too_many_attempts: 35 });
    const refused = await rejectsWith(
      login(dave.username, "a fine password", "10.1.0.2"),
      Code.ResourceExhausted,
      "too_many_attempts",
    );
    const wait = retryAfterOf(refused);
    assert.ok(wait !== undefined && wait >= 890 && wait <= 900, `RetryInfo says ${wait} s`);
    // Refused attempts counted nothing; no check is left pending.
    assert.deepEqual(await wrongCounted(dave.userId), [{ key: "account", hits: 5, pending: 0 }]);
    // The window ends: the right password works again.
    await endWindows(dave.userId);
    await login(dave.username, "a fine password", "10.1.0.2");
    await rejectsWith(login(dave.username, "wrong again", "10.1.0.3"), Code.Unauthenticated, "invalid_credentials");
  });

  test("username and sid name one account: alternating them buys no extra guesses", async () => {
    const erin = await newUser(stack.clients("gRPC over h2c"), "erin");
    for (let n = 0; n < 5; n++) {
      const [value, kind] = n % 2 === 0 ? [erin.username, "username" as const] : [erin.sid, "sid" as const];
      await rejectsWith(login(value, "wrong guess", `10.2.0.${n}`, kind), Code.Unauthenticated, "invalid_credentials");
    }
    await rejectsWith(
      login(erin.sid, "a fine password", "10.2.0.9", "sid"),
      Code.ResourceExhausted,
      "too_many_attempts",
    );
  });

  test("a right password never counts: 32 parallel logins all succeed, and typos between them are the only failures", async () => {
    const gina = await newUser(stack.clients("gRPC over h2c"), "gina");
    await rejectsWith(login(gina.username, "typo 1", "10.7.0.1"), Code.Unauthenticated, "invalid_credentials");
    const answers = await outcomes(
      Array.from({ length: 32 }, () => login(gina.username, "a fine password", "10.7.0.2")),
    );
    assert.deepEqual(tally(answers), { ok: 32 });
    for (let n = 2; n <= 4; n++) {
      await rejectsWith(login(gina.username, `typo ${n}`, "10.7.0.3"), Code.Unauthenticated, "invalid_credentials");
    }
    // Strangers' wrong passwords: 4 so far, the fifth is still checked, then none.
    assert.deepEqual(await wrongCounted(gina.userId), [{ key: "account", hits: 4, pending: 0 }]);
    await rejectsWith(login(gina.username, "typo 5", "10.7.0.4"), Code.Unauthenticated, "invalid_credentials");
    for (let n = 0; n < 10; n++) {
      await rejectsWith(
        login(gina.username, "a fine password", "10.7.0.5"),
        Code.ResourceExhausted,
        "too_many_attempts",
      );
    }
    assert.deepEqual(
      (await wrongCounted(gina.userId))[0],
      { key: "account", hits: 5, pending: 0 },
      "429s count nothing",
    );
  });

  test("a stranger's guessing never locks out the owner at an address the account logged in from", async () => {
    const hana = await newUser(stack.clients("gRPC over h2c"), "hana");
    await login(hana.username, "a fine password", "10.8.0.1"); // her usual address, known from now on
    const guesses = await outcomes(
      Array.from({ length: 100 }, (_, n) => login(hana.username, `guess ${n}`, "10.9.0.1")),
    );
    assert.deepEqual(tally(guesses), { invalid_credentials: 5, too_many_attempts: 95 });
    // The owner, at her usual address, right away and again: in.
    await login(hana.username, "a fine password", "10.8.0.1");
    await login(hana.sid, "a fine password", "10.8.0.1", "sid");
    // Her own typos count on her own allowance (5), and her right password forgives them.
    for (let n = 0; n < 4; n++) {
      await rejectsWith(login(hana.username, `my typo ${n}`, "10.8.0.1"), Code.Unauthenticated, "invalid_credentials");
    }
    await login(hana.username, "a fine password", "10.8.0.1");
    for (let n = 0; n < 5; n++) {
      await rejectsWith(login(hana.username, `my typo ${n}`, "10.8.0.1"), Code.Unauthenticated, "invalid_credentials");
    }
    await rejectsWith(login(hana.username, "a fine password", "10.8.0.1"), Code.ResourceExhausted, "too_many_attempts");
    // A stranger elsewhere is still held.
    await rejectsWith(login(hana.username, "a fine password", "10.9.0.2"), Code.ResourceExhausted, "too_many_attempts");
  });

  test("one address may fail only so often on accounts that do not know it; other addresses are not affected", async () => {
    const fred = await newUser(stack.clients("gRPC over h2c"), "fred");
    // LOGIN_ADDRESS_MAX_FAILURES=12 for this file: twelve wrong names from one address...
    for (let n = 0; n < 12; n++) {
      await rejectsWith(
        login(`ghost_${n}_${process.pid}`, "guess", "10.3.0.1"),
        Code.Unauthenticated,
        "invalid_credentials",
      );
    }
    // ...and the address is held for every account it is a stranger to, right password or not.
    await rejectsWith(login(fred.username, "a fine password", "10.3.0.1"), Code.ResourceExhausted, "too_many_attempts");
    await login(fred.username, "a fine password", "10.3.0.2");
    // Had fred logged in from there before, he would be judged on his own: now he has.
    const sql = postgres(stack.pg.url, { max: 1 });
    try {
      await sql`INSERT INTO known_logins (user_id, address) VALUES (${fred.userId}, '10.3.0.1')`;
    } finally {
      await sql.end();
    }
    await login(fred.username, "a fine password", "10.3.0.1");
  });

  test("registrations per address are limited too", async () => {
    const register = (n: number) =>
      users().registerUser({
        sid: `R${process.pid % 100000}x${n}`,
        username: `reg_${process.pid}_${n}`,
        email: `reg${process.pid}x${n}@example.com`,
        password: "a fine password",
        clientAddress: "10.4.0.1",
      });
    for (let n = 0; n < 4; n++) await register(n);
    await rejectsWith(register(4), Code.ResourceExhausted, "too_many_registrations");
  });
});

describe("the service credential", () => {
  test("every user call without it is UNAUTHENTICATED, and changes nothing", async () => {
    const bare = createClient(UserService, createConnectTransport({ baseUrl: stack.baseUrl, httpVersion: "1.1" }));
    const victim = await newUser(stack.clients("gRPC over h2c"), "victim");
    const session = sessionOf(victim);
    const wrong = createClient(
      UserService,
      createConnectTransport({
        baseUrl: stack.baseUrl,
        httpVersion: "1.1",
        interceptors: [sendServiceCredential("not the credential at all, though long enough")],
      }),
    );
    for (const client of [bare, wrong]) {
      await rejectsWith(client.getUser({ session }), Code.Unauthenticated, "service_credential_required");
      await rejectsWith(client.deactivateUser({ session }), Code.Unauthenticated, "service_credential_required");
      await rejectsWith(
        client.updateUser({ session, email: "evil@example.com" }),
        Code.Unauthenticated,
        "service_credential_required",
      );
      await rejectsWith(
        client.authenticateUser({ login: { case: "username", value: victim.username }, password: "guess" }),
        Code.Unauthenticated,
        "service_credential_required",
      );
    }
    const { user } = await stack.clients("gRPC over h2c").users.getUser({ session });
    assert.equal(user?.isActive, true);
    assert.equal(user?.email.endsWith("@example.com") && !user.email.startsWith("evil"), true);
  });
});
