// A container health check (the images' HEALTHCHECK runs it; slim images have no curl).
// Exits 0 when the service answers, 1 otherwise, with the reason on stderr.
//
//   node kit/src/healthcheck.ts grpc [BASE_URL]     grpc.health.v1.Health/Check over Connect JSON
//                                                   (db-service, log-service): wants SERVING
//   node kit/src/healthcheck.ts /healthz [BASE_URL] GET that path (gateway): wants a 2xx
//
// BASE_URL defaults to http://127.0.0.1:$PORT, the port of the service in the same container,
// so a PORT changed in compose.yaml moves the check along with the service.

const TIMEOUT_MS = 4000;

function fail(message: string): never {
  console.error(`healthcheck: ${message}`);
  process.exit(1);
}

const [mode, baseArg] = process.argv.slice(2);
if (mode === undefined || (mode !== "grpc" && !mode.startsWith("/"))) {
  fail("usage: node kit/src/healthcheck.ts grpc|/path [BASE_URL]   (BASE_URL defaults to http://127.0.0.1:$PORT)");
}
const port = process.env.PORT?.trim();
if (baseArg === undefined && !port) fail("PORT is not set and no BASE_URL was given");
const base = (baseArg ?? `http://127.0.0.1:${port}`).replace(/\/+$/, "");

try {
  if (mode === "grpc") {
    const url = `${base}/grpc.health.v1.Health/Check`;
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", "connect-protocol-version": "1" },
      body: "{}",
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    const text = await res.text();
    if (!res.ok) fail(`${url} answered ${res.status}: ${text.slice(0, 200)}`);
    const status = (JSON.parse(text) as { status?: unknown }).status;
    if (status !== "SERVING") fail(`${url} says ${String(status)}`);
  } else {
    const url = `${base}${mode}`;
    const res = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    if (!res.ok) fail(`${url} answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
  }
} catch (err) {
  fail(
    `${base} did not answer: ${err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err)}`,
  );
}
