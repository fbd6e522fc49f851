import { defineConfig } from "drizzle-kit";

// drizzle-kit generates db-service's migrations from its schema (db-service/src/schema.ts):
// `npm run db:generate` after changing the schema, and commit the new migration.
export default defineConfig({
  dialect: "postgresql",
  schema: "./db-service/src/schema.ts",
  out: "./db-service/migrations",
});
