import type { ErrorObject } from "ajv";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import type { FastifySchemaCompiler } from "fastify";
import type { FieldError } from "./problems.ts";

// ajv-formats is CommonJS with a default export.
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;

/**
 * What a schema says of a refusal, beside JSON Schema: the message a person reads when the
 * schema's own keywords refuse a value, and, for a rule about a whole body, the field it names.
 * The schemas made from the protos carry the protos' messages in them (scripts/rest-schemas.ts).
 */
interface RefusalWords {
  "x-message"?: string;
  "x-field"?: string;
}

function ajv(coerce: boolean): Ajv2020 {
  const instance = addFormats(
    new Ajv2020({
      allErrors: true,
      coerceTypes: coerce,
      useDefaults: coerce,
      strict: true,
      strictRequired: false,
      // Errors carry the schema they failed in, where its x-message is.
      verbose: true,
    }),
  );
  instance.addVocabulary(["x-message", "x-field"]);
  return instance;
}

/**
 * Request validation from the OpenAPI 3.1 schemas (JSON Schema 2020-12). Bodies are taken as
 * they are: no coercion, no defaults, and unknown fields refused. Path, query and header
 * values arrive as text, so they are coerced to the declared types.
 */
export function validatorCompiler(): FastifySchemaCompiler<Record<string, unknown>> {
  const strictAjv = ajv(false);
  const textAjv = ajv(true);
  return ({ schema, httpPart }) => {
    if (httpPart === "body") return strictAjv.compile(schema);
    const validate = textAjv.compile(schema);
    const integers = Object.entries((schema as { properties?: Record<string, { type?: unknown }> }).properties ?? {})
      .filter(([, s]) => s.type === "integer")
      .map(([name]) => name);
    if (integers.length === 0) return validate;
    // ajv coerces whatever `+text` turns into a number: "7\t", " 7", "0x7" and "7e0" would all be
    // id 7. An integer in a path, query or header is its decimal digits and nothing else.
    const checked = (data: unknown) => {
      const values = (data ?? {}) as Record<string, unknown>;
      const bad = integers.filter((name) => typeof values[name] === "string" && !INTEGER_TEXT.test(values[name]));
      if (bad.length > 0) {
        checked.errors = bad.map(
          (name): ErrorObject => ({
            keyword: "type",
            instancePath: `/${name}`,
            schemaPath: `#/properties/${name}/type`,
            params: { type: "integer" },
            message: "must be integer",
          }),
        );
        return false;
      }
      const ok = validate(data);
      checked.errors = validate.errors;
      return ok;
    };
    checked.errors = null as ErrorObject[] | null | undefined;
    return checked;
  };
}

const INTEGER_TEXT = /^-?[0-9]+$/;

const HEADER_NAMES: Record<string, string> = { "idempotency-key": "Idempotency-Key" };

/** ajv's errors as the contract's `errors: [{field, message}]`, one entry per field. */
export function fieldErrors(errors: ErrorObject[], part: string | undefined): FieldError[] {
  const out = new Map<string, string>();
  const add = (field: string, message: string) => {
    const name = part === "headers" ? (HEADER_NAMES[field] ?? field) : field;
    if (!out.has(name)) out.set(name, message);
  };
  // The branch errors under oneOf/anyOf only repeat what their summary says.
  const relevant = errors.filter((e) => !(e.keyword === "required" && /(one|any)Of\//.test(e.schemaPath)));
  for (const e of relevant) {
    const path = e.instancePath.replace(/^\//, "").replaceAll("/", ".");
    const at = (child: string) => (path === "" ? child : `${path}.${child}`);
    const words = (e.parentSchema ?? {}) as RefusalWords;
    // A value of the wrong type is told so; any other refusal by a rule, in the rule's words.
    if (words["x-message"] !== undefined && e.keyword !== "type") {
      add(words["x-field"] ?? (path || "body"), words["x-message"]);
      continue;
    }
    switch (e.keyword) {
      case "required":
        add(at(String(e.params.missingProperty)), "is required");
        break;
      case "dependentRequired":
        add(at(String(e.params.missingProperty)), `is required with ${String(e.params.property)}`);
        break;
      case "additionalProperties":
        add(at(String(e.params.additionalProperty)), "is not allowed");
        break;
      case "type":
        if (path === "") add(part === "body" ? "body" : (part ?? "request"), "must be a JSON object");
        else add(path, `must be ${e.params.type === "integer" ? "an integer" : `of type ${String(e.params.type)}`}`);
        break;
      case "pattern":
        add(path, "has characters or a length that are not allowed");
        break;
      case "format":
        add(path, `must be a valid ${e.params.format}`);
        break;
      default:
        add(path || (part ?? "body"), e.message ?? "is invalid");
    }
  }
  return [...out].map(([field, message]) => ({ field, message }));
}
