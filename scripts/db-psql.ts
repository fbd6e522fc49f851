// `npm run db:psql [-- PSQL_ARGS...]`: psql on the store's database.
//   npm run db:psql                                              interactive
//   npm run db:psql -- -c 'select count(*) from orders'          one command
// The database is DATABASE_URL, or else the running `npm start` store's (scripts/store-db.ts).
// Needs a psql client on PATH (Debian/Ubuntu: apt-get install postgresql-client).
import { spawn } from "node:child_process";
import { constants } from "node:os";
import { NoDatabaseError, storeDatabase } from "./store-db.ts";

let database: ReturnType<typeof storeDatabase>;
try {
  database = storeDatabase();
} catch (err) {
  if (!(err instanceof NoDatabaseError)) throw err;
  console.error(`db:psql: ${err.message}`);
  process.exit(2);
}

// The password goes to psql through PGPASSWORD, not its command line, where `ps` would show it.
const url = new URL(database.url);
const password = decodeURIComponent(url.password);
url.password = "";
const child = spawn("psql", [`--dbname=${url.toString()}`, ...process.argv.slice(2)], {
  stdio: "inherit",
  env: { ...process.env, PGPASSWORD: password, PGAPPNAME: process.env.PGAPPNAME ?? "merch-db-psql" },
});

// Ctrl-C and Ctrl-\ belong to psql (they cancel its query); this process only waits for it.
process.on("SIGINT", () => {});
process.on("SIGQUIT", () => {});
for (const signal of ["SIGTERM", "SIGHUP"] as const) process.on(signal, () => child.kill(signal));

child.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "ENOENT") {
    console.error(
      "db:psql: psql was not found on PATH. Install a PostgreSQL client: `apt-get install postgresql-client` " +
        "(Debian/Ubuntu), `brew install libpq` (macOS). db:reset does not need it.",
    );
    process.exit(127);
  }
  console.error(`db:psql: could not run psql: ${err.message}`);
  process.exit(126);
});
child.on("exit", (code, signal) => {
  process.exit(code ?? 128 + (signal ? constants.signals[signal] : 0));
});
