import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { create, type DescMessage } from "@bufbuild/protobuf";
import { migrate } from "@merch/db-service";
import { dereference, loadSpec, validatorCompiler } from "@merch/gateway";
import { file_merch_common_v1_rules } from "@merch/gen/merch/common/v1/rules_pb";
import * as shop from "@merch/gen/merch/shop/v1/shop_pb";
import * as catalogue from "@merch/gen/merch/store/v1/catalogue_pb";
import * as orders from "@merch/gen/merch/store/v1/order_pb";
import * as users from "@merch/gen/merch/store/v1/user_pb";
import { storeValidator } from "@merch/kit";
import { startTestPostgres, type TestPostgres } from "@merch/testkit";
import postgres from "postgres";

// Each field rule is written once, as a named rule in proto/merch/common/v1/rules.proto: the
// services check it (protovalidate), the REST schemas in gateway/openapi.yaml are made from it
// (`npm run generate`, translating its CEL into JSON Schema), and the database's CHECKs, written
// in db-service's drizzle schema, must say the same. This test holds the three to one verdict on
// a table of values (RE2 and ECMAScript read a pattern alike, the translation is right) and each
// CHECK's own text to the rule's.

let pg: TestPostgres;
let sql: postgres.Sql;
before(async () => {
  pg = await startTestPostgres({ migrate });
  sql = postgres(pg.url, { max: 1, onnotice: () => {} });
});
after(async () => {
  await sql?.end();
  await pg?.destroy();
});

const validator = storeValidator();
const spec = loadSpec();
const compile = validatorCompiler();
const schemas = spec.components.schemas as Record<string, { pattern?: string; minimum?: number; maximum?: number }>;
const pascal = (snake: string) => snake.replace(/(^|_)([a-z0-9])/g, (_m, _u, c: string) => c.toUpperCase());

/**
 * Does protovalidate accept `value` in `field` of a message that is otherwise valid? A member of a
 * oneof is named `oneof.member`.
 */
function protoAccepts(desc: DescMessage, base: Record<string, unknown>, field: string, value: unknown): boolean {
  const [oneof, member] = field.split(".");
  const set = member === undefined ? { [field]: value } : { [oneof as string]: { case: member, value } };
  const message = create(desc, { ...base, ...set });
  const result = validator.validate(desc, message);
  if (result.kind === "valid") return true;
  if (result.kind === "error") throw result.error;
  const snake = (member ?? field).replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  return !result.violations.some((v) => v.field.map((f) => ("name" in f ? f.name : "")).join(".") === snake);
}

/** Does the REST schema accept the value, as the gateway checks request bodies? */
function openApiAccepts(schema: unknown, value: unknown): boolean {
  const check = compile({
    schema: dereference(spec, schema) as Record<string, unknown>,
    httpPart: "body",
    method: "POST",
    url: "/",
  });
  return check(value) === true;
}

/** Does PostgreSQL's CHECK accept the value? (In a transaction that is rolled back.) */
async function sqlAccepts(statement: (tx: postgres.TransactionSql) => Promise<unknown>): Promise<boolean> {
  let accepted = false;
  await sql
    .begin(async (tx) => {
      await statement(tx);
      accepted = true;
      throw new Error("rollback");
    })
    .catch((err: unknown) => {
      if ((err as Error).message === "rollback") return;
      const code = (err as { code?: string }).code;
      // 23514 check_violation, 22001 too long for the column, 22021 a NUL byte.
      if (!["23514", "22001", "22021"].includes(code ?? "")) throw err;
    });
  return accepted;
}

const validRegistration = { sid: "12110001", username: "alice", email: "alice@example.com", password: "correct horse" };
const session = { userId: 1, sessionId: crypto.randomUUID() };

interface Rule {
  /** The rule's schema in openapi.yaml: the PascalCase of its name in rules.proto. */
  rule: string;
  valid: unknown[];
  invalid: unknown[];
  /** Fields of messages that use the rule, and a message that is valid apart from them. */
  proto: [DescMessage, Record<string, unknown>, string][];
  sql?: (value: string) => (tx: postgres.TransactionSql) => Promise<unknown>;
}

const insertUser = (column: "sid" | "username" | "email") => (value: string) => (tx: postgres.TransactionSql) =>
  tx`INSERT INTO users (sid, username, email, password_hash) VALUES (
       ${column === "sid" ? value : "S1"}, ${column === "username" ? value : "rules_user"},
       ${column === "email" ? value : "rules@example.com"}, 'x')`;

const RULES: Rule[] = [
  {
    rule: "Sid",
    valid: ["1", "12110001", "AbC123", "x".repeat(15)],
    invalid: ["", "x".repeat(16), "12-34", "1211 0001", "学号1", "ab\u0000c", "ab\ncd"],
    proto: [
      [users.RegisterUserRequestSchema, validRegistration, "sid"],
      [shop.RegisterRequestSchema, validRegistration, "sid"],
    ],
    sql: insertUser("sid"),
  },
  {
    rule: "Username",
    valid: ["bob", "alice_1", "a.b-c", "x".repeat(50)],
    invalid: ["ab", "x".repeat(51), "has space", "émile", "bob!", "al\u0000ice", "tab\tbed"],
    proto: [
      [users.RegisterUserRequestSchema, validRegistration, "username"],
      [shop.RegisterRequestSchema, validRegistration, "username"],
      [users.UpdateUserRequestSchema, { session }, "username"],
      [shop.UpdateMeRequestSchema, {}, "username"],
    ],
    sql: insertUser("username"),
  },
  {
    rule: "Email",
    valid: [
      "a@b.cn",
      "alice@mail.sustech.edu.cn",
      "first.last+tag@example.co",
      "x@y-z.org",
      "o'neil@example.com",
      `${"a".repeat(243)}@example.com`,
    ],
    invalid: [
      "",
      "plain",
      "a@b",
      "a@@b.cn",
      "a b@c.cn",
      "a@b..cn",
      "a@-b.cn",
      `${"a".repeat(244)}@example.com`,
      "a\u0000@b.cn",
      "ü@b.cn",
    ],
    proto: [
      [users.RegisterUserRequestSchema, validRegistration, "email"],
      [shop.RegisterRequestSchema, validRegistration, "email"],
      [users.UpdateUserRequestSchema, { session }, "email"],
      [shop.UpdateMeRequestSchema, {}, "email"],
    ],
    sql: insertUser("email"),
  },
  {
    rule: "Password",
    valid: ["12345678", "correct horse battery", "пароль-длинный", "x".repeat(128), "🔑🔑🔑🔑🔑🔑🔑🔑"],
    invalid: ["", "1234567", "x".repeat(129), "has\u0000nul!", "tab\there!", "del\u007f123", "🔑🔑🔑🔑🔑🔑🔑"],
    proto: [
      [users.RegisterUserRequestSchema, validRegistration, "password"],
      [shop.RegisterRequestSchema, validRegistration, "password"],
      [users.UpdateUserRequestSchema, { session, currentPassword: "old one" }, "password"],
      [shop.UpdateMeRequestSchema, { currentPassword: "old one" }, "password"],
    ],
  },
  {
    rule: "NoControlCharacters",
    valid: ["alice", "Émile Zola", "p4ss word!", "🔑"],
    invalid: ["a\u0000", "\tx", "line\nbreak", "del\u007f", "esc\u001b["],
    proto: [
      [shop.LoginRequestSchema, { password: "a password" }, "login.username"],
      [shop.LoginRequestSchema, { password: "a password" }, "login.sid"],
      [shop.LoginRequestSchema, { login: { case: "username", value: "alice" } }, "password"],
      [shop.UpdateMeRequestSchema, { password: "a new password" }, "currentPassword"],
    ],
  },
  {
    rule: "OrderQuantity",
    valid: [1, 2, 3],
    invalid: [0, 4, -1, 100],
    proto: [
      [orders.PlaceOrderRequestSchema, { session, productId: 1 }, "quantity"],
      [shop.PlaceOrderRequestSchema, { productId: 1 }, "quantity"],
    ],
    sql: (value) => (tx) =>
      tx`INSERT INTO orders (user_id, product_id, quantity, unit_price)
         VALUES ((SELECT id FROM users LIMIT 1), 1, ${Number(value)}, 1)`,
  },
  {
    rule: "IdempotencyKey",
    valid: ["k", "checkout-2026-12-04#1", "x".repeat(255), " spaces ok ~"],
    invalid: ["x".repeat(256), "line\nbreak", "tab\tkey", "é", "nul\u0000"],
    proto: [
      [orders.PlaceOrderRequestSchema, { session, productId: 1, quantity: 1 }, "idempotencyKey"],
      [shop.PlaceOrderRequestSchema, { productId: 1, quantity: 1 }, "idempotencyKey"],
    ],
    sql: (value) => (tx) =>
      tx`INSERT INTO orders (user_id, product_id, quantity, unit_price, idempotency_key)
         VALUES ((SELECT id FROM users LIMIT 1), 1, 1, 1, ${value})`,
  },
  {
    rule: "Money",
    valid: ["0.00", "49.99", "10.50", "99999999.99"],
    invalid: ["", "1", "1.5", "1.505", "-1.00", "01.00", "100000000.00", "1,00", "1e2", " 1.00"],
    proto: [
      [catalogue.CreateProductRequestSchema, { session, name: "N", category: "C" }, "price"],
      [shop.CreateProductRequestSchema, { name: "N", category: "C" }, "price"],
      [shop.UpdateProductRequestSchema, { id: 1 }, "price"],
    ],
  },
  {
    rule: "ProductName",
    valid: ["SUSTech Cap", "x", "x".repeat(100), "Mug (blue) – 350 ml", "校徽 pin"],
    invalid: ["", " padded", "padded ", "x".repeat(101), "tab\tname", "nul\u0000", "line\nbreak"],
    proto: [
      [catalogue.CreateProductRequestSchema, { session, category: "C", price: "1.00" }, "name"],
      [shop.CreateProductRequestSchema, { category: "C", price: "1.00" }, "name"],
      [shop.UpdateProductRequestSchema, { id: 1 }, "name"],
    ],
  },
  {
    rule: "ProductCategory",
    valid: ["Apparel", "x", "x".repeat(50)],
    invalid: ["", " Apparel", "x".repeat(51), "a\u0000b"],
    proto: [
      [catalogue.CreateProductRequestSchema, { session, name: "N", price: "1.00" }, "category"],
      [shop.CreateProductRequestSchema, { name: "N", price: "1.00" }, "category"],
    ],
  },
  {
    rule: "ProductDescription",
    valid: ["", "Two lines:\nsoft and warm.", "x".repeat(2000)],
    invalid: ["x".repeat(2001)],
    proto: [
      [catalogue.CreateProductRequestSchema, { session, name: "N", category: "C", price: "1.00" }, "description"],
      [shop.CreateProductRequestSchema, { name: "N", category: "C", price: "1.00" }, "description"],
    ],
  },
  {
    rule: "ProductSlogan",
    valid: ["", "Keep the sun off", "x".repeat(200)],
    invalid: ["x".repeat(201), "line\nbreak", "nul\u0000"],
    proto: [
      [catalogue.CreateProductRequestSchema, { session, name: "N", category: "C", price: "1.00" }, "slogan"],
      [shop.CreateProductRequestSchema, { name: "N", category: "C", price: "1.00" }, "slogan"],
    ],
  },
  {
    rule: "StockReason",
    valid: ["delivery", "x".repeat(200), "Lieferung 📦"],
    invalid: ["", "x".repeat(201), "tab\there"],
    proto: [
      [catalogue.AdjustStockRequestSchema, { session, id: 1, delta: 1 }, "reason"],
      [shop.AdjustStockRequestSchema, { id: 1, delta: 1 }, "reason"],
    ],
  },
  {
    rule: "StockLevel",
    valid: [0, 1, 1000000],
    invalid: [-1, 1000001],
    proto: [
      [catalogue.CreateProductRequestSchema, { session, name: "N", category: "C", price: "1.00" }, "stock"],
      [shop.CreateProductRequestSchema, { name: "N", category: "C", price: "1.00" }, "stock"],
    ],
  },
  {
    rule: "StockDelta",
    valid: [1, -1, 1000000, -1000000],
    invalid: [0, 1000001, -1000001],
    proto: [
      [catalogue.AdjustStockRequestSchema, { session, id: 1, reason: "r" }, "delta"],
      [shop.AdjustStockRequestSchema, { id: 1, reason: "r" }, "delta"],
    ],
  },
];

test("every named rule of rules.proto is in this test's table", () => {
  const named = file_merch_common_v1_rules.extensions.map((e) => pascal(e.name)).sort();
  assert.deepEqual(RULES.map((r) => r.rule).sort(), named);
});

for (const rule of RULES) {
  test(`${rule.rule}: the protos, openapi.yaml${rule.sql ? " and the database" : ""} agree on every value`, async () => {
    const openapi = schemas[rule.rule];
    assert.ok(openapi, `openapi.yaml has no schema ${rule.rule}`);
    if (rule.sql) {
      // The orders' CHECKs need an account to hang an order on.
      await sql`INSERT INTO users (sid, username, email, password_hash) VALUES ('R0', 'rules_owner', 'owner@example.com', 'x')
                ON CONFLICT DO NOTHING`;
    }
    for (const [values, expected] of [
      [rule.valid, true],
      [rule.invalid, false],
    ] as const) {
      for (const value of values) {
        const shown = JSON.stringify(value).slice(0, 40);
        for (const [desc, base, field] of rule.proto) {
          assert.equal(protoAccepts(desc, base, field, value), expected, `${desc.typeName}.${field} on ${shown}`);
        }
        assert.equal(openApiAccepts(openapi, value), expected, `openapi.yaml on ${shown}`);
        if (rule.sql) {
          // A NUL cannot even reach the CHECK: PostgreSQL refuses the byte (22021), a refusal too.
          assert.equal(await sqlAccepts(rule.sql(String(value))), expected, `the database on ${shown}`);
        }
      }
    }
  });
}

test("each CHECK of the database says what its rule says", async () => {
  const rows = await sql<{ name: string; def: string }[]>`
    SELECT conname AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE contype = 'c'`;
  const defs = new Map(rows.map((r) => [r.name, r.def]));
  const regexOf = (name: string) => {
    const def = defs.get(name);
    assert.ok(def, `no CHECK ${name}`);
    const literal = /~ '((?:[^']|'')*)'::text/.exec(def)?.[1];
    assert.ok(literal !== undefined, `${name} is not a regular expression CHECK: ${def}`);
    return literal.replaceAll("''", "'");
  };
  for (const [check, rule] of [
    ["users_sid_format", "Sid"],
    ["users_username_format", "Username"],
    ["users_email_format", "Email"],
    ["orders_idempotency_key_format", "IdempotencyKey"],
  ] as const) {
    assert.equal(regexOf(check), schemas[rule]?.pattern, `${check} and the rule ${rule}`);
  }
  const quantity = schemas.OrderQuantity;
  assert.equal(
    defs.get("orders_quantity_check"),
    `CHECK (((quantity >= ${quantity?.minimum}) AND (quantity <= ${quantity?.maximum})))`,
  );
});
