import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create, type DescEnum, type DescField, type DescMessage, ScalarType } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import * as shop from "@merch/gen/merch/shop/v1/shop_pb";
import * as storeOrders from "@merch/gen/merch/store/v1/order_pb";
import * as storeProducts from "@merch/gen/merch/store/v1/product_pb";
import * as storeUsers from "@merch/gen/merch/store/v1/user_pb";
import { fromRestJson, orderJson, productJson, userJson } from "./convert.ts";
import { dereference, loadSpec } from "./spec.ts";
import { validatorCompiler } from "./validation.ts";

// One mapping each way between the REST API's JSON and the messages, driven by descriptors: its
// output is what the schemas made from the same descriptors allow, and db-service's messages are
// mapped with the shop's descriptors, which holds only while their fields are the same.

function shape(field: DescField): string {
  const type =
    field.fieldKind === "scalar"
      ? String(field.scalar)
      : field.fieldKind === "enum"
        ? enumShape(field.enum)
        : field.fieldKind === "message"
          ? field.message.name
          : field.fieldKind;
  return `${field.number} ${field.name} ${field.fieldKind} ${type} ${field.presence}`;
}
function enumShape(e: DescEnum): string {
  return e.values.map((v) => `${v.number}=${v.localName}`).join(",");
}

const PAIRS: [DescMessage, DescMessage][] = [
  [storeProducts.ProductSchema, shop.ProductSchema],
  [storeUsers.UserSchema, shop.UserSchema],
  [storeOrders.OrderSchema, shop.OrderSchema],
];

test("db-service's Product, User and Order have the shop's fields and enum values", () => {
  for (const [internal, outside] of PAIRS) {
    assert.deepEqual(internal.fields.map(shape), outside.fields.map(shape), internal.typeName);
  }
});

const spec = loadSpec();
const compile = validatorCompiler();
function assertAllowed(schemaName: string, json: unknown): void {
  const schema = dereference(spec, (spec.components.schemas as Record<string, unknown>)[schemaName]);
  const check = compile({ schema: schema as Record<string, unknown>, httpPart: "body", method: "GET", url: "/" });
  assert.ok(check(json), `${schemaName}: ${JSON.stringify(check.errors)}\n${JSON.stringify(json)}`);
}

const createdAt = timestampFromMs(Date.UTC(2026, 10, 22, 8, 15, 30, 123));

describe("a message as the REST API's JSON", () => {
  test("a product: every field, money as it is, time to the millisecond", () => {
    const json = productJson(
      create(storeProducts.ProductSchema, { id: 3, name: "Notebook", price: "9.99", stock: 0, createdAt }),
    );
    // Every field by its proto name, the unset ones as their zero value rather than missing:
    // built from the descriptor, so that a new product field needs no edit here.
    const unset = Object.fromEntries(
      storeProducts.ProductSchema.fields
        .filter((f) => f.fieldKind === "scalar")
        .map((f) => [f.name, f.scalar === ScalarType.STRING ? "" : f.scalar === ScalarType.BOOL ? false : 0]),
    );
    assert.deepEqual(json, {
      ...unset,
      id: 3,
      name: "Notebook",
      price: "9.99",
      stock: 0,
      created_at: "2026-11-22T08:15:30.123Z",
    });
    assertAllowed("Product", json);
  });

  test("an order: its status by name, and null until it is cancelled", () => {
    const placed = create(storeOrders.OrderSchema, {
      id: 1,
      userId: 2,
      productId: 3,
      quantity: 2,
      unitPrice: "9.99",
      totalPrice: "19.98",
      status: storeOrders.OrderStatus.PLACED,
      createdAt,
    });
    const json = orderJson(placed);
    assert.equal(json.status, "placed");
    assert.equal(json.cancelled_at, null);
    assertAllowed("Order", json);
    const cancelled = orderJson({ ...placed, status: storeOrders.OrderStatus.CANCELLED, cancelledAt: createdAt });
    assert.equal(cancelled.status, "cancelled");
    assert.equal(cancelled.cancelled_at, "2026-11-22T08:15:30.123Z");
    assertAllowed("Order", cancelled);
  });

  test("a user, and no user at all", () => {
    const json = userJson(
      create(storeUsers.UserSchema, {
        id: 7,
        sid: "12110001",
        username: "alice",
        email: "a@b.cn",
        isActive: true,
        createdAt,
      }),
    );
    assert.equal(json.is_active, true);
    assertAllowed("User", json);
    assert.throws(() => userJson(undefined), /db-service sent no User/);
  });
});

describe("a REST body as the message it mirrors", () => {
  test("snake_case fields by their proto names; the member of a oneof as its case", () => {
    const login = fromRestJson(shop.LoginRequestSchema, { sid: "12110001", password: "pw" });
    assert.deepEqual(login.login, { case: "sid", value: "12110001" });
    assert.equal(login.password, "pw");
    const update = fromRestJson(shop.UpdateMeRequestSchema, { password: "new one", current_password: "old one" });
    assert.equal(update.currentPassword, "old one");
    assert.equal(update.username, undefined, "an absent optional field stays unset");
    const order = fromRestJson(shop.PlaceOrderRequestSchema, { product_id: 3, quantity: 2 });
    assert.deepEqual([order.productId, order.quantity, order.idempotencyKey], [3, 2, ""]);
  });
});
