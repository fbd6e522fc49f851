import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type ApiResponse, client, startTestStore, TEST_JWT_SECRET, type TestStore } from "@merch/devstack";
import { SignJWT } from "jose";

// Attacks on the Bearer token, each of which must end in 401 invalid_token with a challenge.

const ISSUER = "sustech-merch-store";
const AUDIENCE = "sustech-merch-store-api";
const key = new TextEncoder().encode(TEST_JWT_SECRET);

let store: TestStore;
let api: ReturnType<typeof client>;
let alice: { id: number; token: string };
let bob: { id: number; token: string };

async function account(name: string) {
  const body = { sid: `${name}1`, username: name, email: `${name}@example.com`, password: "token tests pw" };
  const reg = await api<{ id: number }>("POST", "/users/register", { body });
  const login = await api<{ token: string }>("POST", "/users/login", {
    body: { sid: body.sid, password: body.password },
  });
  return { id: reg.body.id, token: login.body.token };
}

before(async () => {
  store = await startTestStore();
  api = client(store.url);
  alice = await account("alice");
  bob = await account("bob");
});
after(() => store?.stop());

function sign(claims: Record<string, unknown>, opts: { secret?: Uint8Array; alg?: string } = {}) {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iss: ISSUER, aud: AUDIENCE, iat: now, exp: now + 3600, jti: crypto.randomUUID(), ...claims })
    .setProtectedHeader({ alg: opts.alg ?? "HS256" })
    .sign(opts.secret ?? key);
}

function b64(json: object): string {
  return Buffer.from(JSON.stringify(json)).toString("base64url");
}

function expectRefused(res: ApiResponse, code = "invalid_token") {
  assert.equal(res.status, 401, res.text);
  assert.equal((res.body as { code: string }).code, code);
  assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer realm="sustech-merch-store"/);
  if (code === "invalid_token") assert.match(res.headers.get("www-authenticate") ?? "", /error="invalid_token"/);
}

test("a real token works, for its own user only", async () => {
  const me = await api<{ id: number }>("GET", "/users/me", { token: alice.token });
  assert.equal(me.status, 200);
  assert.equal(me.body.id, alice.id);
  // A token we sign exactly as the gateway does (its jti one of bob's open sessions) is accepted:
  // the forgeries below fail for their flaw alone.
  const { jti } = JSON.parse(Buffer.from(bob.token.split(".")[1] ?? "", "base64url").toString()) as { jti: string };
  const own = await api<{ id: number }>("GET", "/users/me", { token: await sign({ sub: String(bob.id), jti }) });
  assert.equal(own.status, 200, own.text);
  assert.equal(own.body.id, bob.id);
  // The same with a session that was never opened is refused: a signature alone is not a login.
  expectRefused(await api("GET", "/users/me", { token: await sign({ sub: String(bob.id) }) }));
  // And bob's session under alice's id names nobody: a session belongs to its account.
  expectRefused(await api("GET", "/users/me", { token: await sign({ sub: String(alice.id), jti }) }));
});

test("no token, an empty one, and another scheme", async () => {
  expectRefused(await api("GET", "/users/me"), "authentication_required");
  expectRefused(await api("GET", "/users/me", { headers: { authorization: "Bearer " } }));
  expectRefused(await api("GET", "/users/me", { headers: { authorization: `Basic ${btoa("alice:pw")}` } }));
});

test("garbage", async () => {
  for (const garbage of ["garbage", "a.b.c", "....", `${alice.token}x`, "eyJhbGciOiJIUzI1NiJ9.e30."]) {
    expectRefused(await api("GET", "/users/me", { token: garbage }));
  }
});

test("alg none", async () => {
  const [, payload] = alice.token.split(".");
  expectRefused(await api("GET", "/users/me", { token: `${b64({ alg: "none", typ: "JWT" })}.${payload}.` }));
});

test("a tampered payload keeps the old signature", async () => {
  const [header, payload, signature] = alice.token.split(".");
  const claims = JSON.parse(Buffer.from(payload ?? "", "base64url").toString());
  const tampered = `${header}.${b64({ ...claims, sub: String(bob.id) })}.${signature}`;
  expectRefused(await api("GET", "/users/me", { token: tampered }));
});

test("a token signed with a foreign key, or with another algorithm", async () => {
  const foreign = new TextEncoder().encode("some-other-service-secret-0123456789abcdef");
  expectRefused(await api("GET", "/users/me", { token: await sign({ sub: String(alice.id) }, { secret: foreign }) }));
  expectRefused(await api("GET", "/users/me", { token: await sign({ sub: String(alice.id) }, { alg: "HS512" }) }));
});

test("an expired token, and one issued for longer than 24 hours", async () => {
  const now = Math.floor(Date.now() / 1000);
  expectRefused(
    await api("GET", "/users/me", { token: await sign({ sub: String(alice.id), iat: now - 90_000, exp: now - 3600 }) }),
  );
  expectRefused(
    await api("GET", "/users/me", { token: await sign({ sub: String(alice.id), iat: now - 90_000, exp: now + 3600 }) }),
  );
});

test("wrong issuer or audience, a missing claim, a subject that is not a user", async () => {
  const sub = String(alice.id);
  expectRefused(await api("GET", "/users/me", { token: await sign({ sub, iss: "someone-else" }) }));
  expectRefused(await api("GET", "/users/me", { token: await sign({ sub, aud: "another-api" }) }));
  expectRefused(await api("GET", "/users/me", { token: await sign({ sub, jti: undefined }) }));
  expectRefused(await api("GET", "/users/me", { token: await sign({}) }));
  expectRefused(await api("GET", "/users/me", { token: await sign({ sub: "admin" }) }));
  expectRefused(await api("GET", "/users/me", { token: await sign({ sub: "999999" }) }));
});

test("a deactivated user's tokens stop working at once, on every route", async () => {
  const carol = await account("carol");
  const second = (
    await api<{ token: string }>("POST", "/users/login", {
      body: { username: "carol", password: "token tests pw" },
    })
  ).body.token;
  assert.equal((await api("POST", "/users/me/deactivate", { token: carol.token })).status, 204);
  for (const token of [carol.token, second]) {
    expectRefused(await api("GET", "/users/me", { token }));
    expectRefused(await api("GET", "/orders", { token }));
    expectRefused(await api("POST", "/orders", { token, body: { product_id: 1, quantity: 1 } }));
  }
});

test("the Connect door refuses a token with the same challenge", async () => {
  for (const [authorization, error] of [
    [undefined, undefined],
    ["Bearer garbage", "invalid_token"],
  ] as const) {
    const res = await fetch(`${store.url}/merch.shop.v1.ShopService/GetMe`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(authorization ? { authorization } : {}) },
      body: "{}",
    });
    const body = (await res.json()) as { code: string };
    assert.equal(res.status, 401);
    assert.equal(body.code, "unauthenticated");
    assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer realm="sustech-merch-store"/);
    if (error) assert.match(res.headers.get("www-authenticate") ?? "", /error="invalid_token"/);
  }
});
