import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { TestPostgres } from "@merch/testkit";
import { getTableConfig, type PgTable } from "drizzle-orm/pg-core";
import postgres from "postgres";
import * as schema from "./schema.ts";
import { startMigratedPostgres } from "./test-support/index.ts";

// The migrations make the database; schema.ts is how db-service sees it (and what the migrations
// are generated from). They must not drift.

let pg: TestPostgres;
let sql: postgres.Sql;
before(async () => {
  pg = await startMigratedPostgres();
  sql = postgres(pg.url, { max: 1 });
});
after(async () => {
  await sql?.end();
  await pg?.destroy();
});

const TABLES: PgTable[] = [
  schema.users,
  schema.products,
  schema.orders,
  schema.sessions,
  schema.throttle,
  schema.stockAdjustments,
];

interface ColumnShape {
  type: string;
  notNull: boolean;
  hasDefault: boolean;
  identity: string;
  generated: boolean;
}

// drizzle spells a few types differently from PostgreSQL's format_type().
function pgTypeName(drizzleType: string): string {
  return drizzleType
    .replace(/^varchar\((\d+)\)$/, "character varying($1)")
    .replace(/^char\((\d+)\)$/, "character($1)")
    .replace(/^numeric\((\d+), ?(\d+)\)$/, "numeric($1,$2)");
}

function drizzleShape(table: PgTable) {
  const config = getTableConfig(table);
  const columns: Record<string, ColumnShape> = {};
  for (const c of config.columns) {
    const identity = (c as { generatedIdentity?: { type: string } }).generatedIdentity?.type;
    columns[c.name] = {
      type: pgTypeName(c.getSQLType()),
      notNull: c.notNull,
      // Identity and generated columns are filled by PostgreSQL, not by a DEFAULT.
      hasDefault: c.hasDefault && identity === undefined && c.generated === undefined,
      identity: identity === "always" ? "ALWAYS" : identity === "byDefault" ? "BY DEFAULT" : "",
      generated: c.generated !== undefined,
    };
  }
  const uniques = [
    ...config.uniqueConstraints.map((u) => u.columns.map((c) => c.name).join(",")),
    ...config.columns.filter((c) => c.isUnique).map((c) => c.name),
  ];
  return {
    columns,
    primaryKey: [
      ...config.columns.filter((c) => c.primary).map((c) => c.name),
      ...config.primaryKeys.flatMap((pk) => pk.columns.map((c) => c.name)),
    ].sort(),
    foreignKeys: config.foreignKeys
      .map((fk) => {
        const ref = fk.reference();
        return `${ref.columns.map((c) => c.name).join(",")} -> ${getTableConfig(ref.foreignTable).name}(${ref.foreignColumns.map((c) => c.name).join(",")})`;
      })
      .sort(),
    checks: config.checks.map((c) => c.name).sort(),
    uniques: uniques.sort(),
    indexes: config.indexes.map((i) => i.config.name).sort(),
  };
}

async function databaseShape(table: string) {
  const cols = await sql<
    { name: string; type: string; not_null: boolean; has_default: boolean; identity: string; generated: string }[]
  >`
    SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
           a.atthasdef AND a.attgenerated = '' AS has_default,
           CASE a.attidentity WHEN 'a' THEN 'ALWAYS' WHEN 'd' THEN 'BY DEFAULT' ELSE '' END AS identity,
           a.attgenerated AS generated
    FROM pg_attribute a
    WHERE a.attrelid = ${table}::regclass AND a.attnum > 0 AND NOT a.attisdropped`;
  const columns: Record<string, ColumnShape> = {};
  for (const c of cols) {
    columns[c.name] = {
      type: c.type,
      notNull: c.not_null,
      hasDefault: c.has_default,
      identity: c.identity,
      generated: c.generated !== "",
    };
  }
  const constraints = await sql<{ name: string; type: string; columns: string[]; definition: string }[]>`
    SELECT c.conname AS name, c.contype AS type,
           array(SELECT a.attname FROM unnest(c.conkey) k JOIN pg_attribute a
                 ON a.attrelid = c.conrelid AND a.attnum = k ORDER BY a.attname)::text[] AS columns,
           CASE WHEN c.contype = 'f' THEN
             (SELECT string_agg(a.attname, ',') FROM unnest(c.conkey) k JOIN pg_attribute a
                ON a.attrelid = c.conrelid AND a.attnum = k) || ' -> ' || c.confrelid::regclass::text || '(' ||
             (SELECT string_agg(a.attname, ',') FROM unnest(c.confkey) k JOIN pg_attribute a
                ON a.attrelid = c.confrelid AND a.attnum = k) || ')'
           ELSE '' END AS definition
    FROM pg_constraint c WHERE c.conrelid = ${table}::regclass`;
  const indexes = await sql<{ name: string }[]>`
    SELECT i.relname AS name FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
    WHERE x.indrelid = ${table}::regclass
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)`;
  return {
    columns,
    primaryKey: constraints
      .filter((c) => c.type === "p")
      .flatMap((c) => c.columns)
      .sort(),
    foreignKeys: constraints
      .filter((c) => c.type === "f")
      .map((c) => c.definition)
      .sort(),
    checks: constraints
      .filter((c) => c.type === "c")
      .map((c) => c.name)
      .sort(),
    uniques: constraints
      .filter((c) => c.type === "u")
      .map((c) => c.columns.join(","))
      .sort(),
    indexes: indexes.map((i) => i.name).sort(),
  };
}

for (const table of TABLES) {
  const name = getTableConfig(table).name;
  test(`table ${name}: the migrations and the drizzle schema agree column by column`, async () => {
    const db = await databaseShape(name);
    const orm = drizzleShape(table);
    assert.deepEqual(Object.keys(orm.columns).sort(), Object.keys(db.columns).sort(), "column names");
    for (const column of Object.keys(db.columns)) {
      assert.deepEqual(orm.columns[column], db.columns[column], `column ${name}.${column}`);
    }
    assert.deepEqual(orm.primaryKey, db.primaryKey, "primary key");
    assert.deepEqual(orm.foreignKeys, db.foreignKeys, "foreign keys");
    assert.deepEqual(orm.checks, db.checks, "check constraints");
    assert.deepEqual(orm.uniques, db.uniques, "unique constraints");
    assert.deepEqual(orm.indexes, db.indexes, "indexes");
  });
}

test("the database holds exactly the tables the drizzle schema describes", async () => {
  const rows = await sql<{ name: string }[]>`
    SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public'`;
  assert.deepEqual(rows.map((r) => r.name).sort(), TABLES.map((t) => getTableConfig(t).name).sort());
});
