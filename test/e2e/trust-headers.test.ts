import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { ApiResponse, CallOptions } from "@merch/devstack";
import { api, login, newAccount, PASSWORD, store, useTrustStore } from "./trust-store.ts";
import { connectJson, parseRaw, rawHttp } from "./trust-support.ts";

// The trust boundary of the store, proved against the real processes (one of the trust-*.test.ts
// files; trust-login.test.ts has login throttling and the audit of failed logins). Every answer of
// the gateway carries the security headers.

useTrustStore();

describe("security headers", () => {
  const seen: { what: string; headers: Headers }[] = [];
  const keep = <T extends { headers: Headers }>(what: string, res: T): T => {
    seen.push({ what, headers: res.headers });
    return res;
  };

  function noStore(what: string, res: ApiResponse | JsonResponse) {
    assert.match(res.headers.get("cache-control") ?? "", /\bno-store\b/, `${what} is not Cache-Control: no-store`);
  }

  test("Cache-Control: no-store on login's answer and every answer to a signed-in user", async () => {
    const a = await newAccount();
    const loginAnswer = keep(
      "login",
      await api<{ token: string }>("POST", "/users/login", { body: { sid: a.sid, password: PASSWORD } }),
    );
    assert.equal(loginAnswer.status, 200);
    noStore("POST /users/login 200", loginAnswer);
    const token = loginAnswer.body.token;
    const signedIn: [string, string, CallOptions, number][] = [
      ["GET", "/users/me", {}, 200],
      ["PATCH", "/users/me", { body: { email: `new-${a.sid}@example.com` } }, 200],
      ["GET", "/orders", {}, 200],
      ["POST", "/orders", { body: { product_id: 3, quantity: 1 } }, 201],
    ];
    let orderId = 0;
    for (const [method, path, opts, status] of signedIn) {
      const res = keep(path, await api<{ id: number }>(method, path, { ...opts, token }));
      assert.equal(res.status, status, `${method} ${path}: ${res.text}`);
      noStore(`${method} ${path} ${status}`, res);
      if (path === "/orders" && method === "POST") orderId = res.body.id;
    }
    for (const [method, path] of [
      ["GET", `/orders/${orderId}`],
      ["POST", `/orders/${orderId}/cancel`],
      ["GET", "/orders/999999"],
    ] as const) {
      const res = keep(path, await api(method, path, { token }));
      assert.ok(res.status === 200 || res.status === 404, `${method} ${path}: ${res.text}`);
      noStore(`${method} ${path} ${res.status}`, res);
    }
    const spare = await login(a.username);
    const out = keep("logout", await api("POST", "/users/logout", { token: spare }));
    assert.equal(out.status, 204);
    noStore("POST /users/logout 204", out);

    // ShopService answers alike, its Login included.
    for (const [procedure, message, auth] of [
      ["Login", { sid: a.sid, password: PASSWORD }, {}],
      ["GetMe", {}, { authorization: `Bearer ${token}` }],
      ["ListOrders", {}, { authorization: `Bearer ${token}` }],
    ] as const) {
      const res = keep(
        procedure,
        await connectJson(store.url, `merch.shop.v1.ShopService/${procedure}`, message, auth),
      );
      assert.equal(res.status, 200, `${procedure}: ${JSON.stringify(res.body)}`);
      noStore(`ShopService/${procedure}`, res);
    }
    const gone = keep("deactivate", await api("POST", "/users/me/deactivate", { token }));
    assert.equal(gone.status, 204);
    noStore("POST /users/me/deactivate 204", gone);
  });

  test("/docs renders under its CSP: the page, swagger-ui's scripts and styles, and the spec it loads", async () => {
    const page = keep("/docs", await fetch(`${store.url}/docs`, { signal: AbortSignal.timeout(10_000) }));
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
    const csp = page.headers.get("content-security-policy") ?? "";
    assert.match(csp, /script-src 'self'/, `CSP of /docs: ${csp}`);
    const scriptSrc = /script-src ([^;]*)/.exec(csp)?.[1] ?? "";
    assert.ok(!scriptSrc.includes("unsafe"), `no unsafe script sources on /docs: ${csp}`);
    const html = await page.text();
    const scripts = [...html.matchAll(/<script src="([^"]+)"/g)].map((m) => m[1] ?? "");
    const styles = [...html.matchAll(/<link rel="stylesheet" type="text\/css" href="([^"]+)"/g)].map((m) => m[1] ?? "");
    assert.ok(
      scripts.some((s) => s.endsWith("swagger-ui-bundle.js")),
      html,
    );
    assert.ok(
      scripts.some((s) => s.endsWith("swagger-initializer.js")),
      html,
    );
    // With nosniff a browser runs a script only if it is served as JavaScript, a stylesheet only as CSS.
    for (const [paths, type] of [
      [scripts, /javascript/],
      [styles, /^text\/css/],
    ] as const) {
      for (const path of paths) {
        const res = keep(
          path,
          await fetch(new URL(path, `${store.url}/docs`), { signal: AbortSignal.timeout(10_000) }),
        );
        assert.equal(res.status, 200, path);
        assert.match(res.headers.get("content-type") ?? "", type, path);
        assert.ok((await res.arrayBuffer()).byteLength > 0, path);
      }
    }
    // swagger-initializer.js loads the spec from ./json, relative to /docs/.
    const spec = keep("/docs/json", await fetch(`${store.url}/docs/json`, { signal: AbortSignal.timeout(10_000) }));
    assert.equal(spec.status, 200);
    assert.equal(((await spec.json()) as { openapi?: string }).openapi, "3.1.0");
  });

  test("nosniff and a framing policy on every answer, public ones and refusals included", async () => {
    for (const path of [
      "/",
      "/products",
      "/products/1",
      "/products/abc",
      "/healthz",
      "/readyz",
      "/openapi.yaml",
      "/nope",
    ]) {
      keep(path, await fetch(`${store.url}${path}`, { signal: AbortSignal.timeout(10_000) }));
    }
    keep("401", await fetch(`${store.url}/users/me`, { signal: AbortSignal.timeout(10_000) }));
    keep(
      "415",
      await fetch(`${store.url}/users/login`, { method: "POST", body: "x", signal: AbortSignal.timeout(10_000) }),
    );
    keep("ShopService/ListProducts", await connectJson(store.url, "merch.shop.v1.ShopService/ListProducts", {}));
    assert.ok(seen.length > 20);
    for (const { what, headers } of seen) {
      assert.equal(headers.get("x-content-type-options"), "nosniff", `${what}: nosniff`);
      const framing =
        headers.get("x-frame-options") !== null || /frame-ancestors/.test(headers.get("content-security-policy") ?? "");
      assert.ok(framing, `${what}: X-Frame-Options or CSP frame-ancestors`);
      assert.ok(headers.get("content-security-policy"), `${what}: a CSP`);
    }
    // Requests Node's HTTP parser refuses are answered on the raw socket: still nosniff.
    const raw = parseRaw(
      await rawHttp(port(store.url), "GET /orders HTTP/1.1\r\nHost: x\r\nX-Bad: a\u0001b\r\nConnection: close\r\n\r\n"),
    );
    assert.equal(raw.status, 400);
    assert.equal(raw.headers.get("x-content-type-options"), "nosniff", "a parser refusal is nosniff too");
  });
});

type JsonResponse = Awaited<ReturnType<typeof connectJson>>;

function port(url: string): number {
  return Number(new URL(url).port);
}
