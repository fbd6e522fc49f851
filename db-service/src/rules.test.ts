import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { create, type DescMessage } from "@bufbuild/protobuf";
import { startTestPostgres, type TestPostgres } from "@merch/devstack/postgres";
import { dereference, loadSpec } from "@merch/gateway/spec";
import { validatorCompiler } from "@merch/gateway/validation";
import * as shop from "@merch/gen/merch/shop/v1/shop_pb";
import * as orders from "@merch/gen/merch/store/v1/order_pb";
import * as users from "@merch/gen/merch/store/v1/user_pb";
import { storeValidator } from "@merch/kit/errors";
import postgres from "postgres";

// Each field rule is written three times, each where it guards: in the protos (buf.validate, what
// the services check), in openapi.yaml (what the REST API checks), and as the database's CHECKs
// (what no bug can get past). This test holds them to one verdict on a table of values.

let pg: TestPostgres;
let sql: postgres.Sql;
before(async () => {
  pg = await startTestPostgres();
  sql = postgres(pg.url, { max: 1, onnotice: () => {} });
});
after(async () => {
  await sql?.end();
  await pg?.destroy();
});

const validator = storeValidator();
const spec = loadSpec();
const compile = validatorCompiler();
const schemas = spec.components.schemas as Record<string, unknown>;

/** Does protovalidate accept `value` in `field` of a message that is otherwise valid? */
function protoAccepts(desc: DescMessage, base: Record<string, unknown>, field: string, value: unknown): boolean {
  const message = create(desc, { ...base, [field]: value });
  const result = validator.validate(desc, message);
  if (result.kind === "valid") return true;
  if (result.kind === "error") throw result.error;
  const snake = field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  return !result.violations.some((v) => v.field.map((f) => ("name" in f ? f.name : "")).join(".") === snake);
}

/** Does the OpenAPI schema accept the value, as the gateway checks request bodies? */
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

interface Rule {
  field: string;
  valid: unknown[];
  invalid: unknown[];
  proto: [DescMessage, Record<string, unknown>, string][];
  openapi: unknown;
  sql?: (value: string) => (tx: postgres.TransactionSql) => Promise<unknown>;
}

const insertUser = (column: "sid" | "username" | "email") => (value: string) => (tx: postgres.TransactionSql) =>
  tx`INSERT INTO users (sid, username, email, password_hash) VALUES (
       ${column === "sid" ? value : "S1"}, ${column === "username" ? value : "rules_user"},
       ${column === "email" ? value : "rules@example.com"}, 'x')`;

const RULES: Rule[] = [
  {
    field: "sid",
    valid: ["1", "12110001", "AbC123", "x".repeat(15)],
    invalid: ["", "x".repeat(16), "12-34", "1211 0001", "学号1", "ab\u0000c", "ab\ncd"],
    proto: [
      [users.RegisterUserRequestSchema, validRegistration, "sid"],
      [shop.RegisterRequestSchema, validRegistration, "sid"],
    ],
    openapi: schemas.Sid,
    sql: insertUser("sid"),
  },
  {
    field: "username",
    valid: ["bob", "alice_1", "a.b-c", "x".repeat(50)],
    invalid: ["ab", "x".repeat(51), "has space", "émile", "bob!", "al\u0000ice", "tab\tbed"],
    proto: [
      [users.RegisterUserRequestSchema, validRegistration, "username"],
      [shop.RegisterRequestSchema, validRegistration, "username"],
      [users.UpdateUserRequestSchema, { session: { userId: 1, sessionId: crypto.randomUUID() } }, "username"],
      [shop.UpdateMeRequestSchema, {}, "username"],
    ],
    openapi: schemas.Username,
    sql: insertUser("username"),
  },
  {
    field: "email",
    valid: [
      "a@b.cn",
      "alice@mail.sustech.edu.cn",
      "first.last+tag@example.co",
      "x@y-z.org",
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
      [users.UpdateUserRequestSchema, { session: { userId: 1, sessionId: crypto.randomUUID() } }, "email"],
      [shop.UpdateMeRequestSchema, {}, "email"],
    ],
    openapi: schemas.Email,
    sql: insertUser("email"),
  },
  {
    field: "password",
    valid: ["12345678", "correct horse battery", "пароль-длинный", "x".repeat(128), "🔑🔑🔑🔑🔑🔑🔑🔑"],
    invalid: ["", "1234567", "x".repeat(129), "has\u0000nul!", "tab\there!", "del\u007f123"],
    proto: [
      [users.RegisterUserRequestSchema, validRegistration, "password"],
      [shop.RegisterRequestSchema, validRegistration, "password"],
    ],
    openapi: schemas.Password,
  },
  {
    field: "quantity",
    valid: [1, 2, 3],
    invalid: [0, 4, -1, 100],
    proto: [
      [
        orders.PlaceOrderRequestSchema,
        { session: { userId: 1, sessionId: crypto.randomUUID() }, productId: 1 },
        "quantity",
      ],
      [shop.PlaceOrderRequestSchema, { productId: 1 }, "quantity"],
    ],
    openapi: (schemas.PlaceOrderRequest as { properties: Record<string, unknown> }).properties.quantity,
    sql: (value) => (tx) =>
      tx`INSERT INTO orders (user_id, product_id, quantity, unit_price)
         VALUES ((SELECT id FROM users LIMIT 1), 1, ${Number(value)}, 1)`,
  },
  {
    field: "idempotencyKey",
    valid: ["k", "checkout-2026-12-04#1", "x".repeat(255), " spaces ok ~"],
    invalid: ["x".repeat(256), "line\nbreak", "tab\tkey", "é", "nul\u0000"],
    proto: [
      [
        orders.PlaceOrderRequestSchema,
        { session: { userId: 1, sessionId: crypto.randomUUID() }, productId: 1, quantity: 1 },
        "idempotencyKey",
      ],
      [shop.PlaceOrderRequestSchema, { productId: 1, quantity: 1 }, "idempotencyKey"],
    ],
    openapi: (spec.paths["/orders"]?.post?.parameters ?? []).find(
      (p) => (p as { name?: string }).name === "Idempotency-Key",
    )?.schema,
    sql: (value) => (tx) =>
      tx`INSERT INTO orders (user_id, product_id, quantity, unit_price, idempotency_key)
         VALUES ((SELECT id FROM users LIMIT 1), 1, 1, 1, ${value})`,
  },
];

for (const rule of RULES) {
  test(`${rule.field}: the protos, openapi.yaml${rule.sql ? " and the database" : ""} agree on every value`, async () => {
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
        assert.equal(openApiAccepts(rule.openapi, value), expected, `openapi.yaml on ${shown}`);
        if (rule.sql) {
          // A NUL cannot even reach the CHECK: PostgreSQL refuses the byte (22021), a refusal too.
          assert.equal(await sqlAccepts(rule.sql(String(value))), expected, `the database on ${shown}`);
        }
      }
    }
  });
}
