import assert from "node:assert/strict";
import { dereference, loadSpec, type OpenApiDocument } from "@merch/gateway";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";

// Every response the end-to-end tests receive is checked against gateway/openapi.yaml: the
// status must be documented for the operation (or covered by `default`), and the body must
// match that response's schema and media type.

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;
const spec: OpenApiDocument = loadSpec();
const ajv = addFormats(new Ajv2020({ allErrors: true, strict: false }));

interface Route {
  method: string;
  pattern: RegExp;
  path: string;
  responses: Record<
    string,
    { content?: Record<string, { schema: object }>; headers?: Record<string, { schema: object }> }
  >;
}

const routes: Route[] = Object.entries(spec.paths).flatMap(([path, methods]) =>
  Object.entries(methods).map(([method, op]) => ({
    method: method.toUpperCase(),
    path,
    pattern: new RegExp(`^${path.replace(/\{\w+\}/g, "[^/]+")}$`),
    responses: dereference(spec, op.responses) as Route["responses"],
  })),
);

const validators = new Map<object, ValidateFunction>();
function validatorFor(schema: object): ValidateFunction {
  let v = validators.get(schema);
  if (!v) {
    v = ajv.compile(schema);
    validators.set(schema, v);
  }
  return v;
}

/** Which documented (operation, status) pairs the tests have seen. */
export const seen = new Set<string>();

export function documentedStatuses(): string[] {
  return routes.flatMap((r) =>
    Object.keys(r.responses)
      .filter((s) => s !== "default")
      .map((s) => `${r.method} ${r.path} ${s}`),
  );
}

export interface ApiResponse<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

export interface CallOptions {
  body?: unknown;
  /** Sent as is, for malformed-body tests. */
  rawBody?: string;
  token?: string;
  headers?: Record<string, string>;
}

let clients = 0;

/**
 * A client of the REST API that checks every answer against openapi.yaml. With `addressPerCall`,
 * each call says it comes from an address of its own (X-Forwarded-For, for a gateway that trusts
 * one proxy hop), so per-address limits bind only the tests that fix an address on purpose.
 */
export function client(baseUrl: string, clientOpts: { addressPerCall?: boolean } = {}) {
  const net = ++clients % 200;
  let calls = 0;
  return async function call<T = unknown>(
    method: string,
    path: string,
    opts: CallOptions = {},
  ): Promise<ApiResponse<T>> {
    calls++;
    const headers: Record<string, string> = {
      ...(clientOpts.addressPerCall ? { "x-forwarded-for": `10.${net}.${(calls >> 8) & 255}.${calls & 255}` } : {}),
      ...opts.headers,
    };
    if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
    let body: string | undefined = opts.rawBody;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers["content-type"] ??= "application/json";
    }
    const res = await fetch(`${baseUrl}${path}`, { method, headers, ...(body === undefined ? {} : { body }) });
    const text = await res.text();
    const type = (res.headers.get("content-type") ?? "").split(";")[0] ?? "";
    const parsed: unknown = type.endsWith("json") && text !== "" ? JSON.parse(text) : text;
    checkAgainstSpec(method, path, res, type, parsed);
    return { status: res.status, headers: res.headers, body: parsed as T, text };
  };
}

function checkAgainstSpec(method: string, path: string, res: Response, type: string, body: unknown): void {
  const bare = path.split("?")[0] ?? path;
  const route = routes.find((r) => r.method === method && r.pattern.test(bare));
  const where = `${method} ${path} → ${res.status}`;
  if (!route) {
    // Not a documented route: the answer must still be problem details.
    assert.equal(res.status, 404, `${where}: unknown routes answer 404`);
    assert.equal(type, "application/problem+json", `${where}: content type`);
    return;
  }
  const documented = route.responses[String(res.status)];
  const response = documented ?? route.responses.default;
  assert.ok(response, `${where}: status not documented in openapi.yaml (body: ${JSON.stringify(body)})`);
  if (documented) seen.add(`${route.method} ${route.path} ${res.status}`);
  if (!response.content) {
    assert.equal(body, "", `${where}: no body is documented`);
    return;
  }
  const media = response.content[type];
  assert.ok(media, `${where}: content type ${type} not documented (${Object.keys(response.content).join(", ")})`);
  const validate = validatorFor(media.schema);
  assert.ok(
    validate(body),
    `${where}: body does not match openapi.yaml: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(body)}`,
  );
  for (const [name, header] of Object.entries(response.headers ?? {})) {
    const value = res.headers.get(name);
    if (value === null) continue;
    const schema = header.schema as { type?: string };
    const validateHeader = validatorFor(header.schema);
    const typed = schema.type === "integer" ? Number(value) : value;
    assert.ok(validateHeader(typed), `${where}: header ${name}: ${value} does not match openapi.yaml`);
  }
}
