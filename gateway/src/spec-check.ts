import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ErrorObject, ValidateFunction } from "ajv";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { isMap, isNode, isScalar, isSeq, LineCounter, parseDocument } from "yaml";

// The gateway builds its routes and request validation from openapi.yaml, so a document that is
// not valid OpenAPI 3.1 must stop it at start-up rather than be half-understood. YAML is lenient:
// `{ description: Sent, not yet acknowledged. }` is a flow mapping whose comma makes a second key
// `not yet acknowledged.` with a null value, and the plain `yaml` parser takes it silently. This
// check refuses what Redocly's lint (`npm run lint:openapi`) refuses as structure:
//  - YAML errors and warnings (duplicate keys, bad indentation, unknown tags);
//  - anything the official OpenAPI 3.1 JSON Schema refuses (unknown or mistyped fields of every
//    OpenAPI object), with each Schema Object checked against JSON Schema 2020-12's meta-schema
//    and refused if it uses a keyword neither JSON Schema nor OpenAPI defines;
//  - $refs that do not resolve, and operationIds used twice (handlers are found by operationId).
// Each problem names its JSON pointer, as Redocly does, and the line it is on.

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;

/** The official schema; gateway/vendor/README.md says where it comes from. */
const OAS_SCHEMA_PATH = join(dirname(fileURLToPath(import.meta.url)), "..", "vendor", "openapi-3.1", "schema.json");

/**
 * What a Schema Object may contain: the keywords of JSON Schema 2020-12's vocabularies (core,
 * applicator, unevaluated, validation, meta-data, format-annotation, content), the OpenAPI 3.1
 * base vocabulary, and extensions (`x-`). Of the older keywords the 2020-12 meta-schema still
 * describes, `definitions` (now `$defs`) is allowed and `dependencies` is not, as in Redocly's lint.
 */
const SCHEMA_KEYWORDS = [
  ...["$schema", "$id", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary", "$comment", "$defs"],
  "definitions",
  ...["prefixItems", "items", "contains", "additionalProperties", "properties", "patternProperties"],
  ...["dependentSchemas", "propertyNames", "if", "then", "else", "allOf", "anyOf", "oneOf", "not"],
  ...["unevaluatedItems", "unevaluatedProperties"],
  ...["type", "const", "enum", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum"],
  ...["maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxContains", "minContains"],
  ...["maxProperties", "minProperties", "required", "dependentRequired"],
  ...["title", "description", "default", "deprecated", "readOnly", "writeOnly", "examples"],
  ...["format", "contentEncoding", "contentMediaType", "contentSchema"],
  ...["discriminator", "xml", "externalDocs", "example"],
];

/**
 * The Schema Object as this check sees it: valid against JSON Schema 2020-12's meta-schema, and
 * only known keywords. Its `$dynamicAnchor: meta` takes the place of the meta-schema's own, so the
 * meta-schema's subschemas (`properties`, `items`, `allOf`...) are held to the same rule at every
 * depth: that is how the official schema-base.json plugs the OpenAPI dialect in.
 */
const STRICT_SCHEMA_OBJECT = {
  $id: "urn:sustech-merch:openapi-3.1:strict-schema-object",
  $schema: "https://json-schema.org/draft/2020-12/schema",
  $dynamicAnchor: "meta",
  $ref: "https://json-schema.org/draft/2020-12/schema",
  propertyNames: { anyOf: [{ enum: SCHEMA_KEYWORDS }, { pattern: "^x-" }] },
};

/** RFC 9110 media ranges, with parameters: the `format` the official schema gives `content` keys. */
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const MEDIA_RANGE = new RegExp(
  `^(?:\\*/\\*|${TOKEN}/(?:\\*|${TOKEN}))(?:[ \\t]*;[ \\t]*${TOKEN}=(?:${TOKEN}|"(?:[^"\\\\]|\\\\.)*"))*$`,
);

export interface SpecProblem {
  /** A JSON pointer as a URI fragment, the way Redocly prints it: `#/paths/~1orders/get`. */
  pointer: string;
  line: number | undefined;
  message: string;
}

export class SpecError extends Error {
  readonly problems: SpecProblem[];
  constructor(source: string, problems: SpecProblem[]) {
    const shown = problems.slice(0, 20).map((p) => `  ${p.pointer}${p.line ? ` (line ${p.line})` : ""}: ${p.message}`);
    const more = problems.length > shown.length ? [`  ... and ${problems.length - shown.length} more`] : [];
    super(`${source} is not a valid OpenAPI 3.1 document:\n${[...shown, ...more].join("\n")}`);
    this.name = "SpecError";
    this.problems = problems;
  }
}

let validator: ValidateFunction | undefined;

/** Compiled once per process, on first use: this is most of the check's start-up cost. */
function oasValidator(): ValidateFunction {
  if (validator) return validator;
  const oas = JSON.parse(readFileSync(OAS_SCHEMA_PATH, "utf8")) as { $defs: Record<string, unknown> };
  // The vendored schema's Schema Object is any object or boolean; ours is the strict one above.
  oas.$defs.schema = { $ref: STRICT_SCHEMA_OBJECT.$id };
  const ajv = addFormats(
    new Ajv2020({
      allErrors: true,
      // errors carry their parentSchema, to tell an unknown schema keyword from other problems
      verbose: true,
      // The official schema is written for any validator: it leaves out `type` next to object
      // keywords and lets pattern properties overlap named ones, which ajv's strict mode refuses.
      strictTypes: false,
      strictTuples: false,
      strictRequired: false,
      allowMatchingProperties: true,
      // The validator runs once per process: ajv's code optimisation costs more than it saves.
      code: { optimize: false },
    }),
  );
  ajv.addFormat("media-range", MEDIA_RANGE);
  ajv.addSchema(STRICT_SCHEMA_OBJECT);
  validator = ajv.compile(oas);
  return validator;
}

/**
 * Parses openapi.yaml strictly and checks it (see the top of this file). Returns the document as
 * plain data; throws a SpecError listing every problem found.
 */
export function checkOpenApi(text: string, source: string): unknown {
  const lines = new LineCounter();
  const yaml = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const yamlProblems = [...yaml.errors, ...yaml.warnings].map((e) => ({
    pointer: "#",
    line: lines.linePos(e.pos[0]).line,
    message: `YAML: ${e.message.split("\n")[0]}`,
  }));
  if (yamlProblems.length > 0) throw new SpecError(source, yamlProblems);
  const doc: unknown = yaml.toJS();

  const lineOf = (segments: readonly string[]): number | undefined => {
    let node: unknown = yaml.contents;
    let offset: number | undefined;
    for (const segment of segments) {
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === segment);
        if (!pair) break;
        // A problem with a field is reported on its key, which is there even when its value is not.
        offset = (isScalar(pair.key) ? pair.key.range?.[0] : undefined) ?? offset;
        node = pair.value;
      } else if (isSeq(node)) {
        node = node.items[Number(segment)];
        offset = (isNode(node) ? node.range?.[0] : undefined) ?? offset;
      } else break;
    }
    return offset === undefined ? undefined : lines.linePos(offset).line;
  };
  const problem = (segments: readonly string[], message: string): SpecProblem => ({
    pointer: `#${segments.map((s) => `/${s.replaceAll("~", "~0").replaceAll("/", "~1")}`).join("")}`,
    line: lineOf(segments),
    message,
  });

  const validate = oasValidator();
  if (!validate(doc)) {
    throw new SpecError(source, schemaProblems(validate.errors ?? [], doc, problem));
  }

  const problems = [...refProblems(doc, problem), ...operationIdProblems(doc, problem)];
  if (problems.length > 0) throw new SpecError(source, problems);
  return doc;
}

type Problem = (segments: readonly string[], message: string) => SpecProblem;

function segmentsOf(instancePath: string): string[] {
  if (instancePath === "") return [];
  return instancePath
    .slice(1)
    .split("/")
    .map((s) => s.replaceAll("~1", "/").replaceAll("~0", "~"));
}

function valueAt(doc: unknown, segments: readonly string[]): unknown {
  let node = doc;
  for (const s of segments) node = (node as Record<string, unknown> | null | undefined)?.[s];
  return node;
}

/** The usual way an unknown field appears in this YAML, worth saying when it is what happened. */
function nullHint(value: unknown): string {
  return value === null
    ? "; its value is empty: was an unquoted flow-mapping value with a comma, like" +
        " `{ description: a, b }`, split at the comma? Quote the value"
    : "";
}

/**
 * ajv's errors as one problem per place. An `if`'s "must match then/else" only repeats the
 * details found at or under its place, and a combinator's summary is dropped where a detail under
 * it says more; at its own place it stays (two "must have required property" are not both needed
 * when oneOf asks for one).
 */
function schemaProblems(errors: ErrorObject[], doc: unknown, problem: Problem): SpecProblem[] {
  const found: { segments: string[]; message: string; keyword: string }[] = [];
  for (const e of errors) {
    // The details under a propertyNames failure repeat it, one per alternative.
    if (e.propertyName !== undefined) continue;
    const at = segmentsOf(e.instancePath);
    if (e.keyword === "propertyNames") {
      const name = String(e.params.propertyName);
      const keyword = e.parentSchema === STRICT_SCHEMA_OBJECT;
      const what = keyword
        ? "is not a JSON Schema 2020-12 or OpenAPI 3.1 keyword (extensions start with x-)"
        : "is not an allowed name here";
      found.push({
        segments: [...at, name],
        message: `\`${name}\` ${what}${nullHint(valueAt(doc, [...at, name]))}`,
        keyword: e.keyword,
      });
    } else if (e.keyword === "unevaluatedProperties" || e.keyword === "additionalProperties") {
      const name = String(e.params.unevaluatedProperty ?? e.params.additionalProperty);
      found.push({
        segments: [...at, name],
        message: `\`${name}\` is not a field of this object${nullHint(valueAt(doc, [...at, name]))}`,
        keyword: e.keyword,
      });
    } else {
      // ajv's own words for these say nothing of what was expected.
      const detail =
        e.keyword === "enum"
          ? ` (${(e.params.allowedValues as unknown[]).join(", ")})`
          : e.keyword === "not"
            ? ` against ${JSON.stringify(e.schema)}`
            : "";
      found.push({ segments: at, message: `${e.message ?? e.keyword}${detail}`, keyword: e.keyword });
    }
  }
  const SUMMARIES = ["if", "anyOf", "oneOf"];
  const under = (a: string[], b: string[], orAt: boolean) =>
    (orAt ? b.length >= a.length : b.length > a.length) && a.every((s, i) => s === b[i]);
  const kept = found.filter(
    (f) =>
      !SUMMARIES.includes(f.keyword) ||
      !found.some((g) => !SUMMARIES.includes(g.keyword) && under(f.segments, g.segments, f.keyword === "if")),
  );
  const seen = new Set<string>();
  return kept
    .map((f) => problem(f.segments, f.message))
    .filter((p) => {
      const key = `${p.pointer}\n${p.message}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
}

/** Every `$ref` must point inside this document, at something that is there (spec.ts resolves only those). */
function refProblems(doc: unknown, problem: Problem): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const walk = (node: unknown, at: string[]): void => {
    if (Array.isArray(node)) {
      node.forEach((n, i) => {
        walk(n, [...at, String(i)]);
      });
      return;
    }
    if (node === null || typeof node !== "object") return;
    for (const [key, value] of Object.entries(node)) {
      // Reported at the object holding the $ref, as Redocly does.
      if (key === "$ref" && typeof value === "string") {
        if (!value.startsWith("#/") && value !== "#") {
          problems.push(problem(at, `$ref ${value}: only references inside this document are supported`));
        } else if (valueAt(doc, segmentsOf(value.slice(1))) === undefined) {
          problems.push(problem(at, `$ref ${value} does not resolve`));
        }
      }
      walk(value, [...at, key]);
    }
  };
  walk(doc, []);
  return problems;
}

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/** The gateway finds each operation's handler by operationId, so two operations may not share one. */
function operationIdProblems(doc: unknown, problem: Problem): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const first = new Map<string, string>();
  const paths = (doc as { paths?: Record<string, Record<string, { operationId?: unknown }>> }).paths ?? {};
  for (const [path, item] of Object.entries(paths)) {
    for (const method of METHODS) {
      const id = item[method]?.operationId;
      if (typeof id !== "string") continue;
      const at = ["paths", path, method, "operationId"];
      const earlier = first.get(id);
      if (earlier) problems.push(problem(at, `operationId ${id} is already used by ${earlier}`));
      else first.set(id, `${method.toUpperCase()} ${path}`);
    }
  }
  return problems;
}
