import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { LineCounter, parseDocument } from "yaml";

// gateway/openapi.yaml is the one description of the REST API: routes, request schemas and
// which operations need a token all come from it. Its structure as OpenAPI 3.1 is Redocly's to
// check, in npm test (npm run lint:openapi); at start-up the gateway refuses only a document it
// cannot route (loadSpec).

export const SPEC_PATH = join(dirname(fileURLToPath(import.meta.url)), "..", "openapi.yaml");

export type JsonSchema = { [key: string]: unknown };

interface Parameter {
  name: string;
  in: "path" | "query" | "header";
  required?: boolean;
  schema: JsonSchema;
}

interface Operation {
  operationId: string;
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content: Record<string, { schema: JsonSchema }> };
  responses: Record<string, unknown>;
  security?: Record<string, string[]>[];
}

export interface OpenApiDocument {
  openapi: string;
  paths: Record<string, Record<string, Operation>>;
  components: Record<string, Record<string, unknown>>;
}

export interface RouteSpec {
  operationId: string;
  method: "GET" | "POST" | "PATCH" | "PUT" | "DELETE";
  /** In Fastify's syntax: /orders/:id */
  url: string;
  /** Fastify route schema parts, with every $ref resolved. */
  schema: { params?: JsonSchema; querystring?: JsonSchema; headers?: JsonSchema; body?: JsonSchema };
  hasBody: boolean;
  requiresToken: boolean;
}

export function loadSpecText(): string {
  return readFileSync(SPEC_PATH, "utf8");
}

/** A document the gateway cannot route, with every reason found. */
export class SpecError extends Error {
  readonly problems: readonly string[];
  constructor(source: string, problems: string[]) {
    super(`${source} cannot be routed:\n${problems.map((p) => `  ${p}`).join("\n")}`);
    this.name = "SpecError";
    this.problems = problems;
  }
}

/** The methods an operation may have: the gateway routes these, and no other path item field. */
const METHODS = ["get", "post", "put", "patch", "delete"];
/** Path item fields that only describe. */
const DESCRIPTIVE = ["summary", "description", "servers"];

/**
 * Parses the document and refuses it (SpecError) where routing it would guess: YAML errors
 * (a duplicate key, say), a path item field that is neither an operation we route nor a
 * description, an operation without an operationId or with one used before (handlers are found
 * by it), a $ref that does not resolve.
 */
export function loadSpec(text = loadSpecText(), source = "gateway/openapi.yaml"): OpenApiDocument {
  const lines = new LineCounter();
  const yaml = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const yamlProblems = [...yaml.errors, ...yaml.warnings];
  if (yamlProblems.length > 0) {
    throw new SpecError(
      source,
      yamlProblems.map((e) => `line ${lines.linePos(e.pos[0]).line}: ${e.message.split("\n")[0]}`),
    );
  }
  const doc = yaml.toJS() as OpenApiDocument;
  const problems = routingProblems(doc);
  if (problems.length === 0) {
    try {
      routeSpecs(doc);
    } catch (err) {
      problems.push(err instanceof Error ? err.message : String(err));
    }
  }
  if (problems.length > 0) throw new SpecError(source, problems);
  return doc;
}

function routingProblems(doc: OpenApiDocument): string[] {
  if (typeof doc?.paths !== "object" || doc.paths === null) return ["the document has no paths"];
  const problems: string[] = [];
  const first = new Map<string, string>();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [field, op] of Object.entries(item ?? {})) {
      const at = `${field.toUpperCase()} ${path}`;
      if (!METHODS.includes(field)) {
        if (!DESCRIPTIVE.includes(field) && !field.startsWith("x-")) {
          problems.push(`paths.${path}.${field}: not routed (operations are ${METHODS.join(", ")})`);
        }
      } else if (typeof op?.operationId !== "string") {
        problems.push(`${at}: no operationId`);
      } else if (first.has(op.operationId)) {
        problems.push(`${at}: operationId ${op.operationId} is already used by ${first.get(op.operationId)}`);
      } else {
        first.set(op.operationId, at);
      }
    }
  }
  return problems;
}

/** Replaces every local $ref by what it points at; our document has no recursive schemas. */
export function dereference<T>(doc: OpenApiDocument, node: T, depth = 0): T {
  if (depth > 32) throw new Error("$ref nesting too deep in openapi.yaml");
  if (Array.isArray(node)) return node.map((n) => dereference(doc, n, depth + 1)) as T;
  if (node === null || typeof node !== "object") return node;
  const record = node as Record<string, unknown>;
  if (typeof record.$ref === "string") {
    const target = resolvePointer(doc, record.$ref);
    const { $ref: _ref, ...siblings } = record;
    // OpenAPI 3.1 allows keywords next to $ref (for example a description); they win.
    return dereference(doc, { ...(target as object), ...siblings }, depth + 1) as T;
  }
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, dereference(doc, v, depth + 1)])) as T;
}

function resolvePointer(doc: OpenApiDocument, ref: string): unknown {
  if (!ref.startsWith("#/")) throw new Error(`only local $refs are supported, got ${ref}`);
  let node: unknown = doc;
  for (const part of ref.slice(2).split("/")) {
    node = (node as Record<string, unknown> | undefined)?.[part.replace(/~1/g, "/").replace(/~0/g, "~")];
  }
  if (node === undefined) throw new Error(`unresolved $ref ${ref}`);
  return node;
}

function objectOf(params: Parameter[], lowerCaseNames = false): JsonSchema | undefined {
  if (params.length === 0) return undefined;
  const name = (p: Parameter) => (lowerCaseNames ? p.name.toLowerCase() : p.name);
  return {
    type: "object",
    properties: Object.fromEntries(params.map((p) => [name(p), p.schema])),
    required: params.filter((p) => p.required).map(name),
  };
}

/** Every operation of the document as a Fastify route definition. */
export function routeSpecs(doc: OpenApiDocument): RouteSpec[] {
  const routes: RouteSpec[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, raw] of Object.entries(methods)) {
      if (!METHODS.includes(method)) continue;
      const op = dereference(doc, raw);
      const params = op.parameters ?? [];
      const body = op.requestBody?.content["application/json"]?.schema;
      const querystring = objectOf(params.filter((p) => p.in === "query"));
      routes.push({
        operationId: op.operationId,
        method: method.toUpperCase() as RouteSpec["method"],
        url: path.replace(/\{(\w+)\}/g, ":$1"),
        schema: {
          ...(params.some((p) => p.in === "path") ? { params: objectOf(params.filter((p) => p.in === "path")) } : {}),
          // Unknown query parameters are ignored (cache busters are common); unknown body fields are not.
          ...(querystring ? { querystring } : {}),
          ...(params.some((p) => p.in === "header")
            ? {
                headers: objectOf(
                  params.filter((p) => p.in === "header"),
                  true,
                ),
              }
            : {}),
          ...(body ? { body } : {}),
        },
        hasBody: body !== undefined,
        requiresToken: (op.security ?? []).some((s) => "bearer" in s),
      });
    }
  }
  return routes;
}

/** The problem `code`s the document lists (components.schemas.Problem.properties.code.enum). */
export function problemCodes(doc: OpenApiDocument = loadSpec()): string[] {
  const problem = doc.components.schemas?.Problem as { properties?: { code?: { enum?: unknown } } } | undefined;
  const codes = problem?.properties?.code?.enum;
  if (!Array.isArray(codes)) throw new Error("openapi.yaml: Problem.code has no enum");
  return codes.map(String);
}
