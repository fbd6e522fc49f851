import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code } from "@connectrpc/connect";
import { rejectsFields, rejectsWith } from "@merch/testkit";
import { type DbStack, startDbStack, TRANSPORTS } from "./test-support/index.ts";

let stack: DbStack;
before(async () => {
  stack = await startDbStack();
});
after(() => stack?.stop());

const SEEDED = [
  { id: 1, name: "SUSTech Hoodie", category: "Apparel", price: "49.99", stock: 500 },
  { id: 2, name: "SUSTech Water Bottle", category: "Drinkware", price: "19.99", stock: 500 },
  { id: 3, name: "SUSTech Notebook", category: "Stationery", price: "9.99", stock: 500 },
];

for (const transport of TRANSPORTS) {
  describe(`ProductService over ${transport}`, () => {
    const client = () => stack.clients(transport).products;

    test("lists exactly the three seeded products, by id, prices as exact decimal strings", async () => {
      const { products } = await client().listProducts({});
      assert.deepEqual(
        products.map(({ id, name, category, price, stock }) => ({ id, name, category, price, stock })),
        SEEDED,
      );
      for (const p of products) {
        assert.ok(p.description.length > 0 && p.slogan.length > 0);
        assert.ok(p.createdAt && p.createdAt.seconds > 0n);
      }
    });

    test("gets one product", async () => {
      const { product } = await client().getProduct({ id: 2 });
      assert.equal(product?.name, "SUSTech Water Bottle");
      assert.equal(product?.price, "19.99");
    });

    test("an unknown product is NOT_FOUND product_not_found", async () => {
      await rejectsWith(client().getProduct({ id: 999 }), Code.NotFound, "product_not_found");
    });

    test("a zero or negative id is INVALID_ARGUMENT", async () => {
      await rejectsFields(client().getProduct({ id: 0 }), ["id"]);
      await rejectsFields(client().getProduct({ id: -5 }), ["id"]);
    });
  });
}
