// EXPLAIN (ANALYZE, BUFFERS) of db-service's order batch (db-service/src/order-batch.ts) on a
// throwaway PostgreSQL: one batch from one account against one from many, each account with
// many orders already, as a long bench leaves them, with the plan a prepared statement settles
// on (generic) and the one it starts with (custom). `npx node bench/explain-orders.ts [orders] [batch]`
import { randomUUID } from "node:crypto";
import { ORDER_BATCH_STATEMENTS } from "@merch/db-service/order-batch";
import { startMigratedPostgres } from "@merch/db-service/test-support";
import postgres from "postgres";

const existing = Number(process.argv[2] ?? 200_000);
const batch = Number(process.argv[3] ?? 16);
const pg = await startMigratedPostgres();
const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
try {
  const users: { id: number; session: string }[] = [];
  for (let i = 0; i < 64; i++) {
    const [u] = await sql`INSERT INTO users (sid, username, email, password_hash)
      VALUES (${`s${i}`}, ${`user${i}`}, ${`u${i}@example.com`}, 'x') RETURNING id`;
    const session = randomUUID();
    await sql`INSERT INTO sessions (id, user_id, expires_at) VALUES (${session}, ${u?.id}, now() + interval '1 day')`;
    users.push({ id: Number(u?.id), session });
  }
  const [p] =
    await sql`INSERT INTO products (name, category, price, stock) VALUES ('p', 'c', 1, 100000000) RETURNING id`;
  const productId = Number(p?.id);
  // As the bench leaves them: account 1 with all of `existing` orders (the --users 1 run), or
  // the same number spread over 64 accounts.
  const one = users[0] as { id: number; session: string };
  await sql`INSERT INTO orders (user_id, product_id, quantity, unit_price, idempotency_key)
    SELECT ${one.id}, ${productId}, 1, 1, 'db-service:' || gen_random_uuid() FROM generate_series(1, ${existing})`;
  await sql`INSERT INTO orders (user_id, product_id, quantity, unit_price, idempotency_key)
    SELECT u, ${productId}, 1, 1, 'db-service:' || gen_random_uuid()
    FROM unnest(${sql.array(users.slice(1).map((u) => u.id))}::int4[]) u, generate_series(1, ${Math.floor(existing / 63)})`;
  await sql`VACUUM ANALYZE`;
  const [lock, place] = ORDER_BATCH_STATEMENTS as [string, string];
  const arrays = (who: readonly { id: number; session: string }[]) => {
    const rows = Array.from({ length: batch }, (_, i) => who[i % who.length] as { id: number; session: string });
    const lit = (xs: unknown[]) => `'{${xs.map((x) => `"${String(x)}"`).join(",")}}'`;
    return [
      lit(rows.map((r) => r.id)),
      lit(rows.map((r) => r.session)),
      lit(rows.map(() => productId)),
      lit(rows.map(() => 1)),
      lit(rows.map(() => `db-service:${randomUUID()}`)),
    ];
  };
  await sql.unsafe(`PREPARE place (int4[], uuid[], int4[], int4[], text[]) AS ${place}`);
  for (const mode of ["force_custom_plan", "force_generic_plan"]) {
    await sql.unsafe(`SET plan_cache_mode = ${mode}`);
    for (const [label, who] of [
      ["one account", [one]],
      ["64 accounts", users],
    ] as const) {
      await sql
        .begin(async (tx) => {
          await tx.unsafe(lock.replace("$1::int4[]", `'{${productId}}'::int4[]`));
          const plan = await tx.unsafe(`EXPLAIN (ANALYZE, BUFFERS) EXECUTE place (${arrays(who).join(", ")})`);
          console.log(`\n=== ${label}, ${mode}, ${existing} orders already, batch ${batch}`);
          for (const row of plan) console.log(row["QUERY PLAN"]);
          await tx`ROLLBACK`.catch(() => {});
        })
        .catch((err: unknown) => {
          if (!String(err).includes("ROLLBACK")) throw err;
        });
    }
  }
  // The statement one order sent before the batch (issue 13's `place`, its UPDATE as drizzle
  // built it): the key's NOT EXISTS and the session's EXISTS, per order.
  for (const [label, who] of [
    ["one account", one],
    ["another account", users[1] as { id: number; session: string }],
  ] as const) {
    await sql
      .begin(async (tx) => {
        const plan = await tx.unsafe(
          `EXPLAIN (ANALYZE, BUFFERS) UPDATE products SET stock = stock - 1
         WHERE id = $1 AND stock >= 1
           AND EXISTS (SELECT 1 FROM sessions s JOIN users u ON u.id = s.user_id
                       WHERE s.id = $2 AND s.user_id = $3 AND s.ended_at IS NULL AND s.expires_at > now() AND u.is_active)
           AND NOT EXISTS (SELECT * FROM orders WHERE user_id = $3 AND idempotency_key = $4)
         RETURNING *`,
          [productId, who.session, who.id, `db-service:${randomUUID()}`],
        );
        console.log(`\n=== per-order UPDATE (before), ${label}`);
        for (const row of plan) console.log(row["QUERY PLAN"]);
        await tx`ROLLBACK`.catch(() => {});
      })
      .catch((err: unknown) => {
        if (!String(err).includes("ROLLBACK")) throw err;
      });
  }
} finally {
  await sql.end();
  await pg.destroy();
}
