import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorReason, reasonOf } from "@merch/kit";
import postgres from "postgres";
import { type DbStack, newUser, sessionOf, startDbStack, stockOf, TRANSPORTS } from "./test-support/index.ts";

let stack: DbStack;
before(async () => {
  stack = await startDbStack();
});
after(() => stack?.stop());

// The seeded products have 500 in stock: 300 orders of 3 can fill at most 166 of them.
const ORDERS = 300;
const QUANTITY = 3;

TRANSPORTS.forEach((transport, i) => {
  const productId = i + 1;
  test(`${ORDERS} concurrent orders over ${transport} never oversell, and cancelling restores the stock`, async () => {
    const c = stack.clients(transport);
    const users = (await Promise.all(Array.from({ length: 10 }, () => newUser(c, "buyer")))).map(sessionOf);
    assert.equal(await stockOf(stack.pg.url, productId), 500);

    // Watch the stock from the side while the orders race.
    const watcher = postgres(stack.pg.url, { max: 1 });
    const samples: number[] = [];
    let racing = true;
    const watching = (async () => {
      while (racing) {
        const [row] = await watcher`SELECT stock FROM products WHERE id = ${productId}`;
        samples.push(Number(row?.stock));
      }
    })();

    const results = await Promise.allSettled(
      Array.from({ length: ORDERS }, (_, n) =>
        c.orders.placeOrder({ session: users[n % users.length], productId, quantity: QUANTITY }),
      ),
    );
    racing = false;
    await watching;
    await watcher.end();

    const placed = results.flatMap((r) => (r.status === "fulfilled" && r.value.order ? [r.value.order] : []));
    const refused = results.flatMap((r) => (r.status === "rejected" ? [ConnectError.from(r.reason)] : []));
    assert.equal(placed.length, 166);
    assert.equal(refused.length, ORDERS - 166);
    for (const err of refused) {
      assert.equal(err.code, Code.FailedPrecondition, err.message);
      assert.equal(reasonOf(err), ErrorReason.INSUFFICIENT_STOCK);
    }
    assert.equal(await stockOf(stack.pg.url, productId), 2);
    assert.ok(samples.length > 0);
    assert.ok(
      samples.every((s) => s >= 2 && s <= 500),
      `stock samples out of range: ${samples.join(",")}`,
    );

    const sessionOfUser = new Map(users.map((u) => [u.userId, u]));
    const cancelled = await Promise.all(
      placed.map((o) => c.orders.cancelOrder({ session: sessionOfUser.get(o.userId), orderId: o.id })),
    );
    assert.equal(cancelled.length, 166);
    assert.equal(await stockOf(stack.pg.url, productId), 500);
  });
});
