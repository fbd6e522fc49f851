import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { OrderStatus } from "@merch/gen/merch/store/v1/order_pb";
import { reasonName, reasonOf, refusalError } from "@merch/kit";
import { rejectsFields, rejectsWith } from "@merch/testkit";
import postgres from "postgres";
import {
  type DbStack,
  newProduct,
  newUser,
  sessionOf,
  startDbStack,
  stockOf,
  TRANSPORTS,
} from "./test-support/index.ts";

let stack: DbStack;
before(async () => {
  stack = await startDbStack();
});
after(() => stack?.stop());

for (const transport of TRANSPORTS) {
  describe(`OrderService over ${transport}`, () => {
    const c = () => stack.clients(transport);

    test("places an order: prices from the database, total = unit × quantity, stock decremented", async () => {
      const me = await newUser(c());
      const { userId } = me;
      const session = sessionOf(me);
      const productId = await newProduct(stack.pg.url, 10, "33.33");
      const { order, replayed } = await c().orders.placeOrder({ session, productId, quantity: 3 });
      assert.equal(replayed, false);
      assert.ok(order && order.id > 0);
      assert.equal(order.userId, userId);
      assert.equal(order.productId, productId);
      assert.equal(order.quantity, 3);
      assert.equal(order.unitPrice, "33.33");
      assert.equal(order.totalPrice, "99.99");
      assert.equal(order.status, OrderStatus.PLACED);
      assert.ok(order.createdAt);
      assert.equal(order.cancelledAt, undefined);
      assert.equal(await stockOf(stack.pg.url, productId), 7);
    });

    test("PlaceOrders answers each order as PlaceOrder would, in request order, from one call", async () => {
      const me = await newUser(c());
      const other = await newUser(c());
      const session = sessionOf(me);
      const ended = sessionOf(other);
      await c().users.endSession({ session: ended });
      const productId = await newProduct(stack.pg.url, 5, "10.00");
      const first = await c().orders.placeOrder({ session, productId, quantity: 1, idempotencyKey: "k-1" });
      const { results } = await c().orders.placeOrders({
        orders: [
          { session, productId, quantity: 2 },
          { session, productId, quantity: 1, idempotencyKey: "k-1" },
          { session, productId, quantity: 3 },
          { session, productId: 99999, quantity: 1 },
          { session: ended, productId, quantity: 1 },
          { session, productId, quantity: 2, idempotencyKey: "k-1" },
          { session, productId, quantity: 2 },
        ],
      });
      const seen = results.map((r) =>
        r.result.case === "placed"
          ? `placed ${r.result.value.order?.quantity}${r.result.value.replayed ? " replayed" : ""}`
          : r.result.case === "refused"
            ? (reasonOf(refusalError(r.result.value)) ?? "no reason")
            : "empty",
      );
      assert.deepEqual(
        seen.map((s) => (typeof s === "number" ? reasonName(s) : s)),
        [
          "placed 2",
          "placed 1 replayed",
          "insufficient_stock",
          "product_not_found",
          "invalid_token",
          "idempotency_key_reused",
          "placed 2",
        ],
      );
      const replay = results[1]?.result;
      assert.equal(replay?.case === "placed" && replay.value.order?.id, first.order?.id);
      // 5 − 1 (the first order) − 2 − 2: the refused ones took nothing, the replay nothing again.
      assert.equal(await stockOf(stack.pg.url, productId), 0);
      const { orders } = await c().orders.listOrders({ session });
      assert.equal(orders.length, 3);
      // The call's orders went in one transaction: the first did not start a batch alone.
      const placedIds = results.flatMap((r) =>
        r.result.case === "placed" && !r.result.value.replayed ? [r.result.value.order?.id ?? 0] : [],
      );
      const sql = postgres(stack.pg.url, { max: 1, onnotice: () => {} });
      try {
        const [row] = await sql<{ n: number }[]>`
          SELECT count(DISTINCT xmin::text)::int AS n FROM orders WHERE id = ANY(${placedIds}::int[])`;
        assert.equal(row?.n, 1, `orders ${placedIds.join(", ")} committed in one transaction`);
      } finally {
        await sql.end();
      }
    });

    test("PlaceOrders answers each product once, as the call's last order of it left it", async () => {
      const me = await newUser(c());
      const session = sessionOf(me);
      const a = await newProduct(stack.pg.url, 6, "3.00");
      const b = await newProduct(stack.pg.url, 20, "4.00");
      const untouched = await newProduct(stack.pg.url, 30);
      await c().orders.placeOrder({ session, productId: untouched, quantity: 1, idempotencyKey: "once-r" });
      const { results, products } = await c().orders.placeOrders({
        orders: [
          { session, productId: a, quantity: 2 },
          { session, productId: b, quantity: 1 },
          { session, productId: a, quantity: 3 },
          // A replay takes nothing: its product is not answered.
          { session, productId: untouched, quantity: 1, idempotencyKey: "once-r" },
          { session, productId: a, quantity: 3 },
          { session, productId: b, quantity: 3 },
        ],
      });
      const placed = results.flatMap((r) => (r.result.case === "placed" ? [r.result.value] : []));
      assert.equal(placed.length, 5);
      assert.ok(
        placed.every((p) => p.product === undefined),
        "no placed result carries its product",
      );
      // a: 6 − 2 − 3 (the last 3 did not fit); b: 20 − 1 − 3.
      assert.deepEqual(
        products.map((p) => [p.id, p.stock, p.price]).sort((x, y) => Number(x[0]) - Number(y[0])),
        [
          [a, 1, "3.00"],
          [b, 16, "4.00"],
        ],
      );
      assert.equal(await stockOf(stack.pg.url, a), 1);
      assert.equal(await stockOf(stack.pg.url, b), 16);
      // PlaceOrder still answers with the product as its order left it.
      const single = await c().orders.placeOrder({ session, productId: a, quantity: 1 });
      assert.equal(single.product?.id, a);
      assert.equal(single.product?.stock, 0);
    });

    test("PlaceOrders takes 128 orders with the longest keys in one call, and refuses 129", async () => {
      const me = await newUser(c());
      const session = sessionOf(me);
      const productId = await newProduct(stack.pg.url, 200);
      const orders = (n: number, tag: string) =>
        Array.from({ length: n }, (_, i) => ({
          session,
          productId,
          quantity: 1,
          idempotencyKey: `${tag}-${i}-`.padEnd(255, "k"),
        }));
      await rejectsFields(c().orders.placeOrders({ orders: orders(129, "over") }), ["orders"]);
      assert.equal(await stockOf(stack.pg.url, productId), 200);
      const { results } = await c().orders.placeOrders({ orders: orders(128, "full") });
      assert.equal(results.filter((r) => r.result.case === "placed").length, 128);
      assert.equal(await stockOf(stack.pg.url, productId), 72);
    });

    test("PlaceOrders with one invalid order is refused as a whole, naming its field, and places nothing", async () => {
      const me = await newUser(c());
      const session = sessionOf(me);
      const productId = await newProduct(stack.pg.url, 5);
      await rejectsFields(
        c().orders.placeOrders({
          orders: [
            { session, productId, quantity: 1 },
            { session, productId, quantity: 0 },
          ],
        }),
        ["orders.quantity"],
      );
      assert.equal(await stockOf(stack.pg.url, productId), 5);
    });

    test("an unknown product is NOT_FOUND product_not_found and changes nothing", async () => {
      const me = await newUser(c());
      const session = sessionOf(me);
      await rejectsWith(
        c().orders.placeOrder({ session, productId: 99999, quantity: 1 }),
        Code.NotFound,
        "product_not_found",
      );
      const { orders } = await c().orders.listOrders({ session });
      assert.equal(orders.length, 0);
    });

    test("more than the stock is FAILED_PRECONDITION insufficient_stock and leaves the stock", async () => {
      const me = await newUser(c());
      const session = sessionOf(me);
      const productId = await newProduct(stack.pg.url, 2);
      await rejectsWith(
        c().orders.placeOrder({ session, productId, quantity: 3 }),
        Code.FailedPrecondition,
        "insufficient_stock",
      );
      assert.equal(await stockOf(stack.pg.url, productId), 2);
      await c().orders.placeOrder({ session, productId, quantity: 2 });
      assert.equal(await stockOf(stack.pg.url, productId), 0);
      await rejectsWith(
        c().orders.placeOrder({ session, productId, quantity: 1 }),
        Code.FailedPrecondition,
        "insufficient_stock",
      );
    });

    test("after deactivation or with an ended session, no order call works; a refused cancel gives nothing back", async () => {
      const me = await newUser(c());
      const session = sessionOf(me);
      const productId = await newProduct(stack.pg.url, 5);
      const { order } = await c().orders.placeOrder({ session, productId, quantity: 2 });
      assert.ok(order);
      await c().users.deactivateUser({ session });
      const unknownSession = { ...session, sessionId: "00000000-0000-4000-8000-000000000000" };
      for (const s of [session, unknownSession, { ...session, userId: 987_654 }]) {
        const refused = [
          () => c().orders.placeOrder({ session: s, productId: 3, quantity: 1 }),
          () => c().orders.getOrder({ session: s, orderId: order.id }),
          () => c().orders.listOrders({ session: s }),
          () => c().orders.cancelOrder({ session: s, orderId: order.id }),
        ];
        for (const call of refused) await rejectsWith(call(), Code.Unauthenticated, "invalid_token");
      }
      assert.equal(await stockOf(stack.pg.url, productId), 3, "the refused cancel gave nothing back");
    });

    test("gets an own order; another user's order is NOT_FOUND", async () => {
      const owner = sessionOf(await newUser(c()));
      const stranger = sessionOf(await newUser(c()));
      const { order } = await c().orders.placeOrder({ session: owner, productId: 3, quantity: 1 });
      assert.ok(order);
      const got = await c().orders.getOrder({ session: owner, orderId: order.id });
      assert.equal(got.order?.id, order.id);
      assert.equal(got.order?.totalPrice, "9.99");
      await rejectsWith(
        c().orders.getOrder({ session: stranger, orderId: order.id }),
        Code.NotFound,
        "order_not_found",
      );
      await rejectsWith(c().orders.getOrder({ session: owner, orderId: 999999 }), Code.NotFound, "order_not_found");
    });

    test("lists only own orders, newest first, page by page", async () => {
      const me = await newUser(c());
      const { userId } = me;
      const session = sessionOf(me);
      const other = sessionOf(await newUser(c()));
      await c().orders.placeOrder({ session: other, productId: 3, quantity: 1 });
      const placed: number[] = [];
      for (let n = 0; n < 5; n++) {
        const { order } = await c().orders.placeOrder({ session, productId: 3, quantity: 1 });
        assert.ok(order);
        placed.push(order.id);
      }
      const seen: number[] = [];
      let pageToken = "";
      let pages = 0;
      do {
        const page = await c().orders.listOrders({ session, pageSize: 2, pageToken });
        assert.ok(page.orders.length <= 2);
        for (const o of page.orders) assert.equal(o.userId, userId);
        seen.push(...page.orders.map((o) => o.id));
        pageToken = page.nextPageToken;
        pages++;
      } while (pageToken !== "");
      assert.equal(pages, 3);
      assert.deepEqual(seen, [...placed].reverse());
      const all = await c().orders.listOrders({ session });
      assert.deepEqual(
        all.orders.map((o) => o.id),
        [...placed].reverse(),
      );
    });

    test("a bad page size or a forged page token is INVALID_ARGUMENT", async () => {
      const me = await newUser(c());
      const session = sessionOf(me);
      await rejectsFields(c().orders.listOrders({ session, pageSize: 101 }), ["page_size"]);
      await rejectsFields(c().orders.listOrders({ session, pageSize: -1 }), ["page_size"]);
      await rejectsFields(c().orders.listOrders({ session, pageToken: "not-a-token" }), ["page_token"]);
    });

    test("cancel gives the stock back exactly once and repeats answer the cancelled order", async () => {
      const me = await newUser(c());
      const session = sessionOf(me);
      const productId = await newProduct(stack.pg.url, 5);
      const { order } = await c().orders.placeOrder({ session, productId, quantity: 3 });
      assert.ok(order);
      assert.equal(await stockOf(stack.pg.url, productId), 2);
      const results = await Promise.all(
        Array.from({ length: 5 }, () => c().orders.cancelOrder({ session, orderId: order.id })),
      );
      for (const r of results) {
        assert.equal(r.order?.status, OrderStatus.CANCELLED);
        assert.ok(r.order?.cancelledAt);
      }
      assert.equal(await stockOf(stack.pg.url, productId), 5);
      const again = await c().orders.cancelOrder({ session, orderId: order.id });
      assert.equal(again.order?.status, OrderStatus.CANCELLED);
      assert.equal(await stockOf(stack.pg.url, productId), 5);
      const kept = await c().orders.getOrder({ session, orderId: order.id });
      assert.equal(kept.order?.status, OrderStatus.CANCELLED);
    });

    test("another user's cancel is NOT_FOUND and gives nothing back", async () => {
      const owner = sessionOf(await newUser(c()));
      const stranger = sessionOf(await newUser(c()));
      const productId = await newProduct(stack.pg.url, 5);
      const { order } = await c().orders.placeOrder({ session: owner, productId, quantity: 2 });
      assert.ok(order);
      await rejectsWith(
        c().orders.cancelOrder({ session: stranger, orderId: order.id }),
        Code.NotFound,
        "order_not_found",
      );
      assert.equal(await stockOf(stack.pg.url, productId), 3);
    });

    test("an idempotency key replays the first order and charges the stock once", async () => {
      const me = await newUser(c());
      const session = sessionOf(me);
      const productId = await newProduct(stack.pg.url, 10);
      const key = `checkout-${transport}`;
      const first = await c().orders.placeOrder({ session, productId, quantity: 2, idempotencyKey: key });
      const second = await c().orders.placeOrder({ session, productId, quantity: 2, idempotencyKey: key });
      assert.equal(first.replayed, false);
      assert.equal(second.replayed, true);
      assert.equal(second.order?.id, first.order?.id);
      assert.equal(await stockOf(stack.pg.url, productId), 8);
      await rejectsWith(
        c().orders.placeOrder({ session, productId, quantity: 3, idempotencyKey: key }),
        Code.FailedPrecondition,
        "idempotency_key_reused",
      );
      // Keys belong to one user: another user's same key is a new order.
      const other = sessionOf(await newUser(c()));
      const theirs = await c().orders.placeOrder({ session: other, productId, quantity: 2, idempotencyKey: key });
      assert.notEqual(theirs.order?.id, first.order?.id);
      assert.equal(await stockOf(stack.pg.url, productId), 6);
    });

    test("concurrent requests with one idempotency key place one order", async () => {
      const me = await newUser(c());
      const session = sessionOf(me);
      const productId = await newProduct(stack.pg.url, 100);
      const results = await Promise.all(
        Array.from({ length: 20 }, () =>
          c().orders.placeOrder({ session, productId, quantity: 1, idempotencyKey: "double-click" }),
        ),
      );
      const ids = new Set(results.map((r) => r.order?.id));
      assert.equal(ids.size, 1);
      assert.equal(results.filter((r) => !r.replayed).length, 1);
      assert.equal(await stockOf(stack.pg.url, productId), 99);
    });
  });
}
