// db-service's public face, for the workspaces above it (devstack, scripts, tests, bench): how it
// is configured, and the migrations it applies. The service itself is reached over RPC only.
// Two more entry points, ./schema (the drizzle tables) and ./sessions (the session predicate),
// serve bench/lib/pg-ceiling.ts, which queries PostgreSQL exactly as db-service does.
export { type DbServiceConfig, loadConfig } from "./config.ts";
export { applyMigrations, MIGRATIONS_DIR, type MigrationReport, migrate } from "./migrate.ts";
export { loadConfig as loadMigrateConfig } from "./migrate-main.ts";
