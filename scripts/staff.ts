// `npm run staff -- grant <username>` / `npm run staff -- revoke <username>`: gives an account the
// staff role, or takes it back. It calls db-service's UserService/SetUserRole (the same RPC an
// operator can call with buf curl) with the store's service credential; the change holds at once
// on every gateway. db-service is DB_SERVICE_URL, else http://127.0.0.1:$DB_SERVICE_PORT (50051,
// as `npm start` runs it); the credential is SERVICE_CREDENTIAL, else $DATA_DIR/service-credential
// (DATA_DIR defaults to ./.data), which `npm start` keeps.
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";

const USAGE = "usage: npm run staff -- grant|revoke <username>";
const [action, username, ...rest] = process.argv.slice(2);
if (action === "-h" || action === "--help") {
  console.log(USAGE);
  process.exit(0);
}
if ((action !== "grant" && action !== "revoke") || username === undefined || rest.length > 0) {
  console.error(USAGE);
  process.exit(2);
}

const baseUrl = (
  process.env.DB_SERVICE_URL?.trim() || `http://127.0.0.1:${process.env.DB_SERVICE_PORT?.trim() || "50051"}`
).replace(/\/+$/, "");

function credential(): string {
  const given = process.env.SERVICE_CREDENTIAL?.trim();
  if (given) return given;
  const file = join(resolve(process.env.DATA_DIR?.trim() || ".data"), "service-credential");
  if (!existsSync(file)) {
    console.error(`staff: SERVICE_CREDENTIAL is not set and ${file} does not exist: start the store with npm start`);
    process.exit(2);
  }
  return readFileSync(file, "utf8").trim();
}

const role = action === "grant" ? "ROLE_STAFF" : "ROLE_CUSTOMER";
let res: Response;
try {
  res = await fetch(`${baseUrl}/merch.store.v1.UserService/SetUserRole`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-service-credential": credential() },
    body: JSON.stringify({ username, role }),
    signal: AbortSignal.timeout(10_000),
  });
} catch (err) {
  console.error(`staff: cannot reach db-service at ${baseUrl} (${(err as Error).message}); is the store running?`);
  process.exit(1);
}
const body = (await res.json().catch(() => ({}))) as {
  user?: { username?: string };
  changed?: boolean;
  code?: string;
  message?: string;
};
if (!res.ok) {
  console.error(`staff: ${body.message ?? `db-service answered ${res.status}`} (${body.code ?? "unknown"})`);
  process.exit(1);
}
const name = body.user?.username ?? username;
const now = action === "grant" ? "is staff" : "is a customer";
console.log(body.changed ? `${name} ${now} now` : `${name} ${now} already`);
