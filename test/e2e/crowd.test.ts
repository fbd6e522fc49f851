import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type ApiResponse, client, startTestStore, type TestStore } from "@merch/devstack";

// A crowd is not an attacker: the store's default limits, against the real store, as a merch
// launch on one campus meets them. Every student is behind one NAT address; the owner of an
// account logs in from the address she always uses; a stranger guesses from elsewhere. The
// gateway trusts one proxy hop, so X-Forwarded-For names each party's address.

const CAMPUS = "203.0.113.7";
const HOME = "198.51.100.1";
const STRANGER = "192.0.2.66";
const PASSWORD = "crowd tests password";

let store: TestStore;
let api: ReturnType<typeof client>;

before(async () => {
  store = await startTestStore({ serviceEnv: { gateway: { TRUST_PROXY: "1" } } });
  api = client(store.url);
});
after(() => store?.stop());

const from = (address: string) => ({ headers: { "x-forwarded-for": address } });
const tag = (n: number) => `c${process.pid % 100000}x${n}`;

function register(n: number): Promise<ApiResponse> {
  return api("POST", "/users/register", {
    body: { sid: tag(n), username: `crowd_${tag(n)}`, email: `${tag(n)}@example.com`, password: PASSWORD },
    ...from(CAMPUS),
  });
}

function login(username: string, password: string, address: string): Promise<ApiResponse> {
  return api("POST", "/users/login", { body: { username, password }, ...from(address) });
}

/** Runs `work` for 0..n-1, at most `width` at once (a crowd, not a stampede of sockets). */
async function crowd<T>(n: number, width: number, work: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await work(i);
      }
    }),
  );
  return out;
}

function tally(answers: ApiResponse[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of answers) {
    const key = a.status < 400 ? String(a.status) : `${a.status} ${(a.body as { code?: string }).code}`;
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}

test("300 students register from one address within 10 minutes: every one is 201", async () => {
  const started = performance.now();
  const answers = await crowd(300, 16, register);
  const seconds = (performance.now() - started) / 1000;
  assert.deepEqual(tally(answers), { "201": 300 });
  assert.ok(seconds < 600, `300 registrations took ${seconds.toFixed(0)} s`);
  console.log(`300 registrations from one address: ${seconds.toFixed(1)} s`);
});

test("150 students behind that address, a typo each, then the right password: 150 × 401, then 150 × 200", async () => {
  const typos = await crowd(150, 16, (i) => login(`crowd_${tag(i)}`, `${PASSWORD}x`, CAMPUS));
  assert.deepEqual(tally(typos), { "401 invalid_credentials": 150 });
  const logins = await crowd(150, 16, (i) => login(`crowd_${tag(i)}`, PASSWORD, CAMPUS));
  assert.deepEqual(tally(logins), { "200": 150 });
  // And the 151st, who never made a typo.
  assert.equal((await login(`crowd_${tag(150)}`, PASSWORD, CAMPUS)).status, 200);
});

test("32 parallel logins with the right password to one account: all 200", async () => {
  const answers = await Promise.all(Array.from({ length: 32 }, () => login(`crowd_${tag(200)}`, PASSWORD, CAMPUS)));
  assert.deepEqual(tally(answers), { "200": 32 });
});

test("a stranger's 100 wrong passwords: at most 5 checked; the owner logs in from her usual address all along", async () => {
  const owner = `crowd_${tag(250)}`;
  assert.equal((await login(owner, PASSWORD, HOME)).status, 200, "she has logged in from home before");
  const guesses = Promise.all(Array.from({ length: 100 }, (_, n) => login(owner, `guess number ${n}`, STRANGER)));
  // While the guessing goes on, and after it.
  const during = await Promise.all(Array.from({ length: 5 }, () => login(owner, PASSWORD, HOME)));
  const answers = await guesses;
  const after = await login(owner, PASSWORD, HOME);
  const counts = tally(answers);
  assert.ok((counts["401 invalid_credentials"] ?? 0) <= 5, JSON.stringify(counts));
  assert.equal(
    (counts["401 invalid_credentials"] ?? 0) + (counts["429 too_many_attempts"] ?? 0),
    100,
    JSON.stringify(counts),
  );
  for (const a of answers.filter((x) => x.status === 429)) {
    assert.match(a.headers.get("retry-after") ?? "", /^[1-9][0-9]*$/);
  }
  assert.deepEqual(tally([...during, after]), { "200": 6 });
  // The stranger, even with the right password, is held at his address.
  const held = await login(owner, PASSWORD, STRANGER);
  assert.equal(held.status, 429, held.text);
});
