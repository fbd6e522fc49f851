import type { Client } from "@connectrpc/connect";
import type { OrderService } from "@merch/gen/merch/store/v1/order_pb";
import type { ProductService } from "@merch/gen/merch/store/v1/product_pb";
import type { UserService } from "@merch/gen/merch/store/v1/user_pb";
import { getTableColumns } from "drizzle-orm";
import postgres from "postgres";
import { products } from "../schema.ts";

/** db-service's three services, as a test calls them. */
export interface StoreClients {
  products: Client<typeof ProductService>;
  users: Client<typeof UserService>;
  orders: Client<typeof OrderService>;
}

let counter = 0;

export const FIXTURE_PASSWORD = "a fine password";

export interface SignedIn {
  userId: number;
  sessionId: string;
  username: string;
  sid: string;
}

/** Registers a fresh user with unique names and signs it in: its session, for calls made for it. */
export async function newUser(clients: StoreClients, label = "user"): Promise<SignedIn> {
  counter++;
  const tag = `${label}${process.pid}x${counter}`.replace(/[^A-Za-z0-9]/g, "").slice(-15);
  const username = `u_${tag}`;
  await clients.users.registerUser({ sid: tag, username, email: `${tag}@example.com`, password: FIXTURE_PASSWORD });
  return signIn(clients, username);
}

/** A new session of an existing account. */
export async function signIn(clients: StoreClients, username: string, password = FIXTURE_PASSWORD): Promise<SignedIn> {
  const res = await clients.users.authenticateUser({ login: { case: "username", value: username }, password });
  if (!res.user) throw new Error("authenticate returned no user");
  return { userId: res.user.id, sessionId: res.sessionId, username, sid: res.user.sid };
}

/** The Session message of a signed-in user, for requests. */
export function sessionOf(u: SignedIn) {
  return { userId: u.userId, sessionId: u.sessionId };
}

/** A product as a test or the bench gives it: any columns of the drizzle schema; the rest have defaults. */
export type ProductFixture = Partial<typeof products.$inferInsert>;

/**
 * Puts a product straight in the database: a new one, or, when one of that name is there, that
 * one with the given columns set. Returns its id. The one place tests and the bench make
 * products: its columns come from the drizzle schema, so a new product column needs no edit here
 * unless it is required and has no default.
 */
export async function putProduct(
  sql: postgres.Sql | postgres.TransactionSql,
  given: ProductFixture = {},
): Promise<number> {
  counter++;
  const fields: ProductFixture = {
    name: `Test product ${process.pid}-${counter}`,
    category: "Test",
    price: "12.50",
    stock: 100,
    ...given,
  };
  const columns = getTableColumns(products);
  const row = Object.fromEntries(
    Object.entries(fields).map(([key, value]) => [columns[key as keyof typeof columns].name, value]),
  );
  const [saved] = await sql`
    INSERT INTO products ${sql(row)}
    ON CONFLICT (name) DO UPDATE SET ${sql(row)}
    RETURNING id`;
  if (!saved) throw new Error(`no product was put for ${fields.name}`);
  return Number(saved.id);
}

/** Adds a product with its own stock, for tests that need one. */
export async function newProduct(url: string, stock: number, price = "12.50"): Promise<number> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    return await putProduct(sql, { stock, price });
  } finally {
    await sql.end();
  }
}

export async function stockOf(url: string, productId: number): Promise<number> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql`SELECT stock FROM products WHERE id = ${productId}`;
    return Number(row?.stock);
  } finally {
    await sql.end();
  }
}
