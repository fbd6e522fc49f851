import { defineConfig } from "drizzle-kit";

// drizzle-kit generates the schema's history into db-init/migrations from db-service's drizzle
// schema (db-service/src/schema.ts): `npm run db:generate` after changing the schema, and commit
// the new migration.
export default defineConfig({
  dialect: "postgresql",
  schema: "./db-service/src/schema.ts",
  out: "./db-init/migrations",
});
