import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import { type Supervisor, startTestStore, superviseStack, type TestStore } from "@merch/devstack";
import postgres from "postgres";

// Faults under load, against the real processes with durable commits: PostgreSQL killed and
// restarted, PostgreSQL frozen and thawed, db-service killed and restarted by the supervisor npm
// start uses. Sixteen clients place orders all along, each with a unique Idempotency-Key, and
// every answer is checked against the database afterwards: nothing answered 201 is missing,
// nothing refused with a plain error exists, no key placed two orders, and the stock adds up.

const CLIENTS = 16;
/** Each product's stock when the load starts: more than the load can sell, so that no order is
 * refused for stock and an unknown outcome asked again can only be placed or replayed. */
const STOCK = 1_000_000;

interface Answer {
  key: string;
  productId: number;
  quantity: number;
  status: number;
  code?: string;
  orderId?: number;
  /** When the request was sent, and when its answer came. */
  at: number;
  doneAt: number;
}

let store: TestStore;
let supervisor: Supervisor;
let sql: postgres.Sql;
const answers: Answer[] = [];
const tokens: string[] = [];
const restarts: string[] = [];

before(async () => {
  store = await startTestStore({ durable: true });
  supervisor = superviseStack(store.stack, {
    log: (message) => restarts.push(message),
    onFailing: (name) => restarts.push(`${name} keeps failing`),
    minDelayMs: 200,
  });
  sql = postgres(store.stack.databaseUrl, { max: 1, onnotice: () => {}, connect_timeout: 2 });
  await sql`UPDATE products SET stock = ${STOCK} WHERE id <= 3`;
  for (let i = 0; i < CLIENTS; i++) {
    const account = {
      sid: `F${i}x${process.pid % 10000}`,
      username: `fault_${i}_${process.pid}`,
      email: `fault${i}x${process.pid}@example.com`,
      password: "fault tolerant",
    };
    const reg = await post("/users/register", account);
    assert.equal(reg.status, 201);
    const login = await post("/users/login", { username: account.username, password: account.password });
    tokens.push(((await login.json()) as { token: string }).token);
  }
});
after(async () => {
  supervisor?.stop();
  await sql?.end({ timeout: 1 }).catch(() => {});
  await store?.stop();
});

function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${store.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
}

/** One client: orders of 1 (of products 1..3 in turn), each with a key of its own, until stopped. */
async function client(i: number, running: () => boolean): Promise<void> {
  let n = 0;
  while (running()) {
    const key = `fault-${i}-${randomUUID()}`;
    const productId = 1 + (n++ % 3);
    const at = Date.now();
    try {
      const res = await post(
        "/orders",
        { product_id: productId, quantity: 1 },
        {
          authorization: `Bearer ${tokens[i]}`,
          "idempotency-key": key,
        },
      );
      const body = (await res.json()) as { id?: number; code?: string };
      answers.push({
        key,
        productId,
        quantity: 1,
        status: res.status,
        code: body.code,
        orderId: body.id,
        at,
        doneAt: Date.now(),
      });
    } catch {
      // No answer at all (the client gave up): as unknown as outcome_unknown.
      answers.push({ key, productId, quantity: 1, status: 0, code: "no_answer", at, doneAt: Date.now() });
    }
    // A breath between orders, as a person's clicks would have: the load is steady, not a flood.
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Runs the load around a fault; returns when the fault passed and orders succeed again. */
async function underLoad(fault: () => Promise<{ faultAt: number; recoveredAt: number }>) {
  let running = true;
  const from = answers.length;
  const clients = Array.from({ length: CLIENTS }, (_, i) => client(i, () => running));
  await new Promise((r) => setTimeout(r, 1000));
  const { faultAt, recoveredAt } = await fault();
  // Until an order placed after the recovery succeeds, or 20 s.
  const deadline = Date.now() + 20_000;
  while (!answers.slice(from).some((a) => a.status === 201 && a.at >= recoveredAt) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 500));
  running = false;
  await Promise.all(clients);
  const mine = answers.slice(from);
  // Time to the first refusal a client received after the fault (however early it was sent), and
  // to the first success received for an order sent after the recovery.
  const firstFailure = Math.min(...mine.filter((a) => a.status >= 500 && a.doneAt >= faultAt).map((a) => a.doneAt));
  const firstSuccess = Math.min(...mine.filter((a) => a.status === 201 && a.at >= recoveredAt).map((a) => a.doneAt));
  return {
    failureAfterMs: Number.isFinite(firstFailure) ? firstFailure - faultAt : undefined,
    successAfterMs: Number.isFinite(firstSuccess) ? firstSuccess - recoveredAt : undefined,
    answered: mine.length,
    failed: mine.filter((a) => a.status !== 201).length,
  };
}

/**
 * Resolves once the database answers a new connection. Not the test's own connection: after the
 * postmaster is killed, the backend that served it can still answer a query for a moment, and the
 * test once took that for the database's return, timing db-service's recovery from before the
 * restart (db-service then logged the database down 202 ms after "recovery", and up 886 ms after).
 */
async function databaseAnswers(): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const probe = postgres(store.stack.databaseUrl, { max: 1, onnotice: () => {}, connect_timeout: 2 });
    try {
      await probe`SELECT 1`;
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      await probe.end({ timeout: 0 }).catch(() => {});
    }
  }
}

/** db-service's health changes as it logged them, in ms from `since`: what it saw of a fault. */
function healthSeen(since: number): string {
  return store.stack.services["db-service"]
    .output()
    .split("\n")
    .filter((line) => line.includes("database health changed"))
    .flatMap((line) => {
      try {
        const { time, database, why } = JSON.parse(line) as { time: number; database: string; why?: string };
        return time >= since - 5000 ? [`${database} at ${time - since} ms${why ? ` (${why})` : ""}`] : [];
      } catch {
        return [];
      }
    })
    .join("; ");
}

test("PostgreSQL killed and started again, under load", async (t) => {
  let recovered = 0;
  const figures = await underLoad(async () => {
    const pg = store.stack.postgres;
    assert.ok(pg);
    const faultAt = Date.now();
    pg.kill("SIGKILL");
    // The supervisor starts it again, as under npm start.
    await databaseAnswers();
    recovered = Date.now();
    return { faultAt, recoveredAt: recovered };
  });
  t.diagnostic(`kill: ${JSON.stringify(figures)}`);
  // How long db-service took to see the database back, against when the test's own query worked.
  t.diagnostic(`db-service saw, from the database answering the test: ${healthSeen(recovered)}`);
  assert.ok(figures.failureAfterMs !== undefined && figures.failureAfterMs < 1000, JSON.stringify(figures));
  assert.ok(figures.successAfterMs !== undefined && figures.successAfterMs < 2000, JSON.stringify(figures));
});

test("PostgreSQL frozen for 3 s and thawed, under load; /readyz says so within 2 s", async (t) => {
  let readyzDownAfterMs: number | undefined;
  const figures = await underLoad(async () => {
    const pg = store.stack.postgres;
    assert.ok(pg);
    const faultAt = Date.now();
    pg.freeze();
    try {
      while (Date.now() - faultAt < 3000) {
        const res = await fetch(`${store.url}/readyz`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
        if (res?.status === 503 && readyzDownAfterMs === undefined) readyzDownAfterMs = Date.now() - faultAt;
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      pg.thaw();
    }
    return { faultAt, recoveredAt: Date.now() };
  });
  t.diagnostic(`freeze: ${JSON.stringify({ ...figures, readyzDownAfterMs })}`);
  assert.ok(readyzDownAfterMs !== undefined && readyzDownAfterMs < 2000, `readyz 503 after ${readyzDownAfterMs} ms`);
  assert.ok(figures.failureAfterMs !== undefined && figures.failureAfterMs < 1000, JSON.stringify(figures));
  assert.ok(figures.successAfterMs !== undefined && figures.successAfterMs < 2000, JSON.stringify(figures));
});

test("db-service killed under load and restarted by the supervisor", async (t) => {
  const figures = await underLoad(async () => {
    const db = store.stack.services["db-service"];
    const faultAt = Date.now();
    db.child.kill("SIGKILL");
    // Back once its health answers SERVING.
    const deadline = Date.now() + 20_000;
    for (;;) {
      const res = await fetch(`${store.url}/readyz`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
      if (res?.status === 200 && Date.now() - faultAt > 100) break;
      if (Date.now() > deadline) assert.fail("db-service did not come back");
      await new Promise((r) => setTimeout(r, 50));
    }
    return { faultAt, recoveredAt: Date.now() };
  });
  t.diagnostic(`db-service kill: ${JSON.stringify(figures)}`);
  assert.ok(
    restarts.some((m) => /db-service restarted/.test(m)),
    restarts.join("\n"),
  );
  assert.ok(figures.failureAfterMs !== undefined && figures.failureAfterMs < 1000, JSON.stringify(figures));
  assert.ok(figures.successAfterMs !== undefined && figures.successAfterMs < 2000, JSON.stringify(figures));
});

test("afterwards every answer is true: no ghost order, no lost order, no double order, exact stock", async (t) => {
  await databaseAnswers();
  const rows = await sql<
    { id: number; product_id: number; quantity: number; idempotency_key: string; status: string }[]
  >`
    SELECT id, product_id, quantity, idempotency_key, status FROM orders WHERE idempotency_key LIKE 'fault-%'`;
  const byKey = new Map<string, (typeof rows)[number]>();
  for (const row of rows) {
    assert.ok(!byKey.has(row.idempotency_key), `two orders for key ${row.idempotency_key}`);
    byKey.set(row.idempotency_key, row);
  }
  const tally = { placed: 0, refusedPlainly: 0, unknown: 0, unknownThatHappened: 0 };
  for (const a of answers) {
    const row = byKey.get(a.key);
    if (a.status === 201) {
      tally.placed++;
      assert.ok(row, `order ${a.orderId} was answered 201 but is not in the database`);
      assert.equal(row.id, a.orderId);
    } else if (a.code === "outcome_unknown" || a.code === "no_answer") {
      tally.unknown++;
      if (row) tally.unknownThatHappened++;
    } else {
      tally.refusedPlainly++;
      assert.equal(row, undefined, `order with key ${a.key} was refused (${a.status} ${a.code}) but exists: a ghost`);
    }
  }
  // Every order of the whole store is accounted for in the stock.
  const stock = await sql<{ id: number; stock: number; sold: number }[]>`
    SELECT p.id, p.stock, coalesce(sum(o.quantity) FILTER (WHERE o.status = 'placed'), 0)::int AS sold
    FROM products p LEFT JOIN orders o ON o.product_id = p.id WHERE p.id <= 3 GROUP BY p.id ORDER BY p.id`;
  for (const p of stock) assert.equal(STOCK - p.stock, p.sold, `product ${p.id}: ${STOCK} - ${p.stock} != ${p.sold}`);
  // An unknown outcome is settled by asking again with the same key.
  for (const a of answers.filter((x) => x.code === "outcome_unknown").slice(0, 5)) {
    const i = Number(a.key.split("-")[1]);
    const again = await post(
      "/orders",
      { product_id: a.productId, quantity: 1 },
      {
        authorization: `Bearer ${tokens[i]}`,
        "idempotency-key": a.key,
      },
    );
    assert.equal(again.status, 201, await again.clone().text());
    const row = byKey.get(a.key);
    if (row) assert.equal(again.headers.get("idempotent-replayed"), "true");
  }
  t.diagnostic(`answers: ${JSON.stringify({ total: answers.length, ...tally })}`);
  assert.ok(tally.placed > 100, "the load placed orders throughout");
});
