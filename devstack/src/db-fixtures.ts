import postgres from "postgres";
import type { StoreClients } from "./db-stack.ts";

let counter = 0;

/** Registers a fresh user with unique names; returns its id. */
export async function newUser(clients: StoreClients, label = "user"): Promise<number> {
  counter++;
  const tag = `${label}${process.pid}x${counter}`.replace(/[^A-Za-z0-9]/g, "").slice(-15);
  const { user } = await clients.users.registerUser({
    sid: tag,
    username: `u_${tag}`,
    email: `${tag}@example.com`,
    password: "a fine password",
  });
  if (!user) throw new Error("register returned no user");
  return user.id;
}

/** Adds a product straight in the database, for tests that need their own stock. */
export async function newProduct(url: string, stock: number, price = "12.50"): Promise<number> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    counter++;
    const [row] = await sql`
      INSERT INTO products (name, category, price, stock)
      VALUES (${`Test product ${process.pid}-${counter}`}, 'Test', ${price}, ${stock})
      RETURNING id`;
    return Number(row?.id);
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
