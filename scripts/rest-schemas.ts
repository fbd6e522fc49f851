import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseCel } from "@bufbuild/cel";
import {
  createFileRegistry,
  type DescEnum,
  type DescExtension,
  type DescField,
  type DescMessage,
  type DescOneof,
  fromBinary,
  getExtension,
  getOption,
  hasExtension,
  hasOption,
  ScalarType,
} from "@bufbuild/protobuf";
import { reflect } from "@bufbuild/protobuf/reflect";
import { FeatureSet_FieldPresence, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { getComments } from "@bufbuild/protoplugin";
import {
  field as fieldRulesOption,
  Ignore,
  type Int32Rules,
  Int32RulesSchema,
  message as messageRulesOption,
  oneof as oneofRulesOption,
  predefined as predefinedOption,
  type StringRules,
  StringRulesSchema,
} from "@merch/gen/buf/validate/validate_pb";
import { Document, isScalar, isSeq, parseDocument, visit } from "yaml";

// The REST API's JSON Schemas, derived from the protos: `npm run generate` writes them into
// gateway/openapi.yaml between the two marker lines, `--check` (npm test) fails when the file
// says anything else. What openapi.yaml names by `$ref: "#/components/schemas/X"` without
// writing X itself is made here:
//  - a message of merch.shop.v1 (ShopService is the REST API's twin) becomes its JSON shape:
//    snake_case fields, every field always present in an answer (an unset message is null),
//    a request's fields required unless they are optional, in a oneof or ignored when empty;
//  - a named rule of merch/common/v1/rules.proto becomes a schema with its CEL translated into
//    JSON Schema and its message as `x-message`, which the gateway answers a refusal with.
// The standard protovalidate rules this understands are translated too; any other rule stops
// the generator with what it could not translate, rather than leave a door unguarded.

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const SPEC = join(ROOT, "gateway", "openapi.yaml");
const SHOP_PACKAGE = "merch.shop.v1";
const RULES_FILE = "merch/common/v1/rules.proto";
const BEGIN =
  "    # Made by `npm run generate` from the protos (scripts/rest-schemas.ts): change a rule or a\n" +
  "    # message in proto/, not these lines, down to the end marker.\n";
const END = "    # End of the schemas made from the protos.\n";

/** Fields a REST request carries elsewhere than in its JSON body. */
const NOT_IN_BODY: Record<string, Record<string, string>> = {
  "merch.shop.v1.PlaceOrderRequest": { idempotency_key: "the Idempotency-Key header" },
  "merch.shop.v1.UpdateProductRequest": { id: "the path" },
  "merch.shop.v1.AdjustStockRequest": { id: "the path" },
};

type Schema = { [keyword: string]: unknown };
type Flavour = "request" | "response";

const INT32 = { minimum: -2147483648, maximum: 2147483647 };

class Unsupported extends Error {}

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const pascal = (snake: string) => snake.replace(/(^|_)([a-z0-9])/g, (_m, _u, c: string) => c.toUpperCase());

function describe(desc: DescMessage | DescField | DescExtension | DescEnum): Schema {
  const text = getComments(desc)
    .leading?.split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "")
    .join(" ");
  return text ? { description: text } : {};
}

// --- CEL, as far as JSON Schema can say it

type Expr = ReturnType<typeof parseCel>["expr"];

function call(e: Expr | undefined) {
  return e?.exprKind.case === "callExpr" ? e.exprKind.value : undefined;
}
function isIdent(e: Expr | undefined, name: string): boolean {
  return e?.exprKind.case === "identExpr" && e.exprKind.value.name === name;
}
function constant(e: Expr | undefined): string | number | undefined {
  if (e?.exprKind.case !== "constExpr") return undefined;
  const k = e.exprKind.value.constantKind;
  if (k.case === "stringValue") return k.value;
  if (k.case === "int64Value" || k.case === "uint64Value") return Number(k.value);
  return undefined;
}
/** `has(this.f)` (the parser expands the macro into a test-only select): f. */
function hasField(e: Expr | undefined): string | undefined {
  if (e?.exprKind.case !== "selectExpr") return undefined;
  const s = e.exprKind.value;
  return s.testOnly && isIdent(s.operand, "this") ? s.field : undefined;
}
function disjuncts(e: Expr): Expr[] {
  const c = call(e);
  return c?.function === "_||_" ? c.args.flatMap(disjuncts) : [e];
}

function pattern(re: unknown): string {
  if (typeof re !== "string") throw new Unsupported("matches() takes a string literal here");
  try {
    new RegExp(re, "u");
  } catch (err) {
    throw new Unsupported(`the regular expression ${re} is not ECMAScript: ${(err as Error).message}`);
  }
  return re;
}

/** Merges two keyword sets that both must hold; a keyword both set is kept apart in allOf. */
function both(a: Schema, b: Schema): Schema {
  const clash = Object.keys(b).some((k) => k in a);
  return clash ? { allOf: [a, b] } : { ...a, ...b };
}

const BOUNDS: Record<string, [string, string]> = {
  "_<=_": ["maximum", "maxLength"],
  "_<_": ["exclusiveMaximum", ""],
  "_>=_": ["minimum", "minLength"],
  "_>_": ["exclusiveMinimum", ""],
};

/** A rule's CEL as JSON Schema keywords. `this` is the field's value, or the message for a message rule. */
function celSchema(expression: string, kind: "string" | "integer" | "message"): Schema {
  const walk = (e: Expr): Schema => {
    const c = call(e);
    if (c?.function === "_&&_") return c.args.map(walk).reduce(both);
    if (c?.function === "_||_") {
      const parts = disjuncts(e);
      // Predefined rules may start with `!rule ||`: the rule is off when its value is false.
      const guard = call(parts[0]);
      if (parts.length === 2 && guard?.function === "!_" && isIdent(guard.args[0], "rule")) {
        return walk(parts[1] as Expr);
      }
      if (kind === "message") {
        const fields = parts.map(hasField);
        if (fields.every((f) => f !== undefined)) return { anyOf: fields.map((f) => ({ required: [f] })) };
        const [first, second] = parts;
        const negated = call(first);
        const given = negated?.function === "!_" ? hasField(negated.args[0]) : undefined;
        const then = hasField(second);
        if (parts.length === 2 && given !== undefined && then !== undefined) {
          return { dependentRequired: { [given]: [then] } };
        }
      }
    }
    if (c?.function === "!_") {
      const inner = call(c.args[0]);
      if (kind === "string" && inner?.function === "matches" && isIdent(inner.target, "this")) {
        return { not: { pattern: pattern(constant(inner.args[0])) } };
      }
    }
    if (kind === "string" && c?.function === "matches" && isIdent(c.target, "this")) {
      return { pattern: pattern(constant(c.args[0])) };
    }
    const excluded = constant(c?.args[1]);
    if (kind === "integer" && c?.function === "_!=_" && isIdent(c.args[0], "this") && typeof excluded === "number") {
      return { not: { const: excluded } };
    }
    const bound = c ? BOUNDS[c.function] : undefined;
    const limit = constant(c?.args[1]);
    if (bound && typeof limit === "number") {
      const subject = c?.args[0];
      const sizeOf = call(subject);
      if (kind === "integer" && isIdent(subject, "this")) return { [bound[0]]: limit };
      if (kind === "string" && bound[1] && sizeOf?.function === "size" && isIdent(sizeOf.args[0], "this")) {
        return { [bound[1]]: limit };
      }
    }
    throw new Unsupported(`cannot say \`${expression}\` in JSON Schema (see the top of rules.proto)`);
  };
  return walk(parseCel(expression).expr);
}

// --- The protos

class Generator {
  readonly schemas = new Map<string, Schema>();
  readonly flavours = new Map<string, Flavour>();
  readonly registry: ReturnType<typeof createFileRegistry>;
  readonly #rules: Map<string, DescExtension>;
  readonly #timestamp = "Timestamp";

  constructor(registry: ReturnType<typeof createFileRegistry>) {
    this.registry = registry;
    const file = registry.getFile(RULES_FILE);
    if (!file) throw new Error(`${RULES_FILE} is not in the build`);
    this.#rules = new Map(file.extensions.map((ext) => [pascal(ext.name), ext]));
  }

  /** Makes the schema `name` (and what it names), used as `flavour`. */
  component(name: string, flavour: Flavour, from: string): void {
    const seen = this.flavours.get(name);
    if (seen !== undefined) {
      if (seen !== flavour && this.registry.getMessage(`${SHOP_PACKAGE}.${name}`)) {
        throw new Error(`${name} is used as a request and as an answer (${from}): give each its own message`);
      }
      return;
    }
    this.flavours.set(name, flavour);
    const rule = this.#rules.get(name);
    if (rule) {
      this.schemas.set(name, this.#ruleSchema(rule));
      return;
    }
    if (name === this.#timestamp) {
      this.schemas.set(name, { description: "RFC 3339, in UTC.", type: "string", format: "date-time" });
      return;
    }
    const message = this.registry.getMessage(`${SHOP_PACKAGE}.${name}`);
    if (!message) {
      throw new Error(
        `gateway/openapi.yaml names #/components/schemas/${name} (${from}), which it does not write and which is` +
          ` neither a message of ${SHOP_PACKAGE} nor a rule of ${RULES_FILE}`,
      );
    }
    this.schemas.set(name, this.#messageSchema(message, flavour));
  }

  #ruleSchema(ext: DescExtension): Schema {
    const rules = getOption(ext, predefinedOption)?.cel ?? [];
    const [rule, ...more] = rules;
    if (!rule || more.length > 0) throw new Error(`${ext.typeName}: a named rule is one CEL rule`);
    const kind = ext.extendee.typeName === StringRulesSchema.typeName ? "string" : "integer";
    try {
      return {
        ...describe(ext),
        type: kind,
        ...celSchema(rule.expression, kind),
        "x-message": rule.message,
      };
    } catch (err) {
      if (err instanceof Unsupported) throw new Error(`${RULES_FILE}: ${ext.name}: ${err.message}`);
      throw err;
    }
  }

  #messageSchema(message: DescMessage, flavour: Flavour): Schema {
    const omitted = NOT_IN_BODY[message.typeName] ?? {};
    const fields = message.fields.filter((f) => !(f.name in omitted));
    const properties: Record<string, Schema> = {};
    const required: string[] = [];
    for (const field of fields) {
      try {
        const { schema, isRequired } = this.#fieldSchema(field, flavour);
        properties[field.name] = schema;
        if (isRequired) required.push(field.name);
      } catch (err) {
        if (err instanceof Unsupported) throw new Error(`${field.parent.typeName}.${field.name}: ${err.message}`);
        throw err;
      }
    }
    const rules = [
      ...(flavour === "request" ? message.oneofs.flatMap((o) => this.#oneofRule(o)) : []),
      ...(hasOption(message, messageRulesOption) ? this.#messageRules(message) : []),
    ];
    return {
      ...describe(message),
      type: "object",
      additionalProperties: false,
      ...(required.length > 0 ? { required } : {}),
      properties,
      ...(rules.length > 0 ? { allOf: rules } : {}),
    };
  }

  #messageRules(message: DescMessage): Schema[] {
    const rules = getOption(message, messageRulesOption);
    if (rules.oneof.length > 0) throw new Error(`${message.typeName}: message oneof rules are not translated yet`);
    return rules.cel.map((rule) => {
      try {
        return { ...celSchema(rule.expression, "message"), "x-field": rule.id, "x-message": rule.message };
      } catch (err) {
        if (err instanceof Unsupported) throw new Error(`${message.typeName} rule ${rule.id}: ${err.message}`);
        throw err;
      }
    });
  }

  #oneofRule(oneof: DescOneof): Schema[] {
    const names = oneof.fields.map((f) => f.name);
    if (!hasOption(oneof, oneofRulesOption) || !getOption(oneof, oneofRulesOption).required) {
      throw new Error(`${oneof.parent.typeName}.${oneof.name}: only a required oneof has a REST form here`);
    }
    return [
      {
        oneOf: names.map((n) => ({ required: [n] })),
        "x-field": "body",
        "x-message": `give exactly one of ${names.slice(0, -1).join(", ")} and ${names.at(-1)}`,
      },
    ];
  }

  /** The field's JSON schema, and whether a request must carry it. */
  #fieldSchema(field: DescField, flavour: Flavour): { schema: Schema; isRequired: boolean } {
    const rules = hasOption(field, fieldRulesOption) ? getOption(field, fieldRulesOption) : undefined;
    const alwaysSet = rules?.required === true;
    const hasPresence = field.presence === FeatureSet_FieldPresence.EXPLICIT && !alwaysSet;
    const ignoredWhenEmpty = rules?.ignore === Ignore.IF_ZERO_VALUE;
    let schema = this.#valueSchema(field, flavour);
    const named: Schema[] = [];
    const keywords: Schema = {};
    const type = rules?.type;
    if (type?.case === "string") Object.assign(keywords, this.#stringRules(type.value, named));
    else if (type?.case === "int32") Object.assign(keywords, this.#int32Rules(type.value, named));
    else if (type?.case !== undefined && !(type.case === "enum" && !type.value.const)) {
      throw new Unsupported(`${type.case} rules are not translated yet`);
    }
    for (const rule of rules?.cel ?? []) {
      const kind = field.fieldKind === "scalar" && field.scalar === ScalarType.STRING ? "string" : "integer";
      named.push({ ...celSchema(rule.expression, kind), "x-message": rule.message });
    }
    if (named.length === 1 && Object.keys(keywords).length === 0) {
      // The named rule says the type too.
      schema = named[0] as Schema;
    } else {
      schema = { ...schema, ...keywords, ...(named.length > 0 ? { allOf: named } : {}) };
      if (keywords.exclusiveMinimum !== undefined) delete schema.minimum;
      if (keywords.exclusiveMaximum !== undefined) delete schema.maximum;
    }
    schema = { ...describe(field), ...schema };
    if (flavour === "response" && hasPresence) {
      const { description, ...rest } = schema;
      schema = { ...(description ? { description } : {}), oneOf: [rest, { type: "null" }] };
    }
    const isRequired =
      flavour === "response" ||
      alwaysSet ||
      (field.presence !== FeatureSet_FieldPresence.EXPLICIT && field.fieldKind !== "list" && !ignoredWhenEmpty);
    return { schema, isRequired };
  }

  #valueSchema(field: DescField, flavour: Flavour): Schema {
    switch (field.fieldKind) {
      case "scalar":
        return scalarSchema(field.scalar);
      case "enum":
        return enumSchema(field.enum);
      case "message":
        return this.#messageRef(field.message, flavour);
      case "list":
        return {
          type: "array",
          items:
            field.listKind === "scalar"
              ? scalarSchema(field.scalar)
              : field.listKind === "enum"
                ? enumSchema(field.enum)
                : this.#messageRef(field.message, flavour),
        };
      default:
        throw new Unsupported("maps have no REST form here");
    }
  }

  #messageRef(message: DescMessage, flavour: Flavour): Schema {
    if (message.typeName === "google.protobuf.Timestamp") {
      this.component(this.#timestamp, flavour, "a Timestamp field");
      return ref(this.#timestamp);
    }
    if (!message.typeName.startsWith(`${SHOP_PACKAGE}.`)) throw new Unsupported(`${message.typeName} has no REST form`);
    this.component(message.name, flavour, `a field of type ${message.typeName}`);
    return ref(message.name);
  }

  /** Standard string rules as keywords; the named ones (rules.proto) as references, into `named`. */
  #stringRules(rules: StringRules, named: Schema[]): Schema {
    const out: Schema = {};
    for (const f of reflect(StringRulesSchema, rules).fields) {
      if (!reflect(StringRulesSchema, rules).isSet(f)) continue;
      if (f.name === "min_len") out.minLength = Number(rules.minLen);
      else if (f.name === "max_len") out.maxLength = Number(rules.maxLen);
      else if (f.name === "len") Object.assign(out, { minLength: Number(rules.len), maxLength: Number(rules.len) });
      else if (f.name === "pattern") out.pattern = pattern(rules.pattern);
      else if (f.name === "example") out.examples = [...rules.example];
      else throw new Unsupported(`string.${f.name} is not translated yet`);
    }
    named.push(...this.#namedRules(rules, StringRulesSchema.typeName));
    return out;
  }

  #int32Rules(rules: Int32Rules, named: Schema[]): Schema {
    const out: Schema = {};
    for (const f of reflect(Int32RulesSchema, rules).fields) {
      if (!reflect(Int32RulesSchema, rules).isSet(f)) continue;
      if (f.name === "gte") out.minimum = rules.greaterThan.value;
      else if (f.name === "gt") out.exclusiveMinimum = rules.greaterThan.value;
      else if (f.name === "lte") out.maximum = rules.lessThan.value;
      else if (f.name === "lt") out.exclusiveMaximum = rules.lessThan.value;
      else if (f.name === "example") out.examples = [...rules.example];
      else throw new Unsupported(`int32.${f.name} is not translated yet`);
    }
    named.push(...this.#namedRules(rules, Int32RulesSchema.typeName));
    return out;
  }

  #namedRules(rules: StringRules | Int32Rules, extendee: string): Schema[] {
    const known = [...this.#rules].filter(([, ext]) => ext.extendee.typeName === extendee);
    const used = known.filter(([, ext]) => hasExtension(rules as never, ext as never));
    const unknown = (rules.$unknown ?? []).filter((u) => !known.some(([, ext]) => ext.number === u.no));
    if (unknown.length > 0) {
      throw new Unsupported(`uses a predefined rule (field ${unknown[0]?.no}) that is not in ${RULES_FILE}`);
    }
    return used.map(([name, ext]) => {
      if (getExtension(rules as never, ext as never) !== true)
        throw new Unsupported(`${ext.name} is set, but not true`);
      this.component(name, "request", `rule ${ext.name}`);
      return ref(name);
    });
  }
}

function scalarSchema(scalar: ScalarType): Schema {
  switch (scalar) {
    case ScalarType.STRING:
      return { type: "string" };
    case ScalarType.BOOL:
      return { type: "boolean" };
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return { type: "integer", ...INT32 };
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return { type: "integer", minimum: 0, maximum: 4294967295 };
    default:
      throw new Unsupported(`${ScalarType[scalar].toLowerCase()} fields have no REST form here`);
  }
}

/** An enum as its values' names in lower case without the enum's prefix; the zero value is never sent. */
export function enumSchema(e: DescEnum): Schema {
  return { type: "string", enum: e.values.filter((v) => v.number !== 0).map((v) => v.localName.toLowerCase()) };
}

// --- openapi.yaml

const ORDER = [
  ...["$ref", "description", "type", "format", "enum", "minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"],
  ...["minLength", "maxLength", "pattern", "not", "items", "examples", "additionalProperties", "required"],
  ...["properties", "oneOf", "anyOf", "allOf", "dependentRequired", "x-field", "x-message"],
];

function ordered(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(ordered);
  if (node === null || typeof node !== "object") return node;
  const entries = Object.entries(node as Schema);
  const rank = (k: string) => (ORDER.includes(k) ? ORDER.indexOf(k) : ORDER.length);
  const isSchema = entries.some(([k]) => ORDER.includes(k));
  const sorted = isSchema ? entries.sort(([a], [b]) => rank(a) - rank(b)) : entries;
  return Object.fromEntries(sorted.map(([k, v]) => [k, k === "properties" ? mapValues(v, ordered) : ordered(v)]));
}
function mapValues(v: unknown, f: (x: unknown) => unknown): unknown {
  return Object.fromEntries(Object.entries(v as Schema).map(([k, x]) => [k, f(x)]));
}

function yamlBlock(schemas: Map<string, Schema>): string {
  const doc = new Document(Object.fromEntries([...schemas].map(([k, v]) => [k, ordered(v)])));
  // Small schemas on one line, as the hand-written part of the file has them.
  visit(doc, {
    Map(_key, node) {
      const leafy = node.items.every((p) => isScalar(p.value) || (isSeq(p.value) && p.value.items.every(isScalar)));
      if (leafy && JSON.stringify(node.toJSON()).length <= 90) node.flow = true;
    },
    Seq(_key, node) {
      if (node.items.every(isScalar)) node.flow = true;
    },
  });
  const text = doc.toString({ indent: 2, lineWidth: 0, flowCollectionPadding: true });
  return text
    .trimEnd()
    .split("\n")
    .map((l) => `    ${l}`)
    .join("\n");
}

function refsIn(node: unknown, into: Set<string>): void {
  if (Array.isArray(node)) for (const n of node) refsIn(n, into);
  else if (node !== null && typeof node === "object") {
    for (const [k, v] of Object.entries(node)) {
      if (k === "$ref" && typeof v === "string" && v.startsWith("#/components/schemas/")) {
        into.add(v.slice("#/components/schemas/".length));
      } else refsIn(v, into);
    }
  }
}

/** The document with the generated schemas put in place of the old ones. */
export function derive(specText: string, image: Uint8Array): string {
  const start = specText.indexOf(BEGIN);
  const end = specText.indexOf(END);
  if (start < 0 || end < start) {
    throw new Error(`gateway/openapi.yaml has lost its markers for the generated schemas:\n${BEGIN}...\n${END}`);
  }
  const before = specText.slice(0, start + BEGIN.length);
  const after = specText.slice(end);
  const hand = parseDocument(before + after, { uniqueKeys: true });
  if (hand.errors.length > 0) throw new Error(`gateway/openapi.yaml: ${hand.errors[0]?.message}`);
  const doc = hand.toJS() as {
    paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: unknown }> } }>>;
    components: { schemas: Record<string, unknown> };
  };
  const handWritten = new Set(Object.keys(doc.components.schemas ?? {}));
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, image));
  const gen = new Generator(registry);

  const bodies = new Set<string>();
  for (const methods of Object.values(doc.paths)) {
    for (const op of Object.values(methods)) {
      for (const media of Object.values(op.requestBody?.content ?? {})) refsIn(media.schema, bodies);
    }
  }
  const all = new Set<string>();
  refsIn(doc, all);
  for (const name of [...all].filter((n) => !handWritten.has(n)).sort()) {
    gen.component(name, bodies.has(name) ? "request" : "response", "in the hand-written part");
  }
  for (const name of gen.schemas.keys()) {
    if (handWritten.has(name)) throw new Error(`gateway/openapi.yaml writes ${name}, which is made from the protos`);
  }
  const sorted = new Map([...gen.schemas].sort(([a], [b]) => a.localeCompare(b)));
  return `${before}${yamlBlock(sorted)}\n${after}`;
}

/** As `npm run lint` would have it: Biome formats YAML too. */
function formatted(text: string): string {
  return execFileSync(join(ROOT, "node_modules", ".bin", "biome"), ["format", `--stdin-file-path=${SPEC}`], {
    cwd: ROOT,
    input: text,
    encoding: "utf8",
  });
}

function buildImage(): Uint8Array {
  return execFileSync(join(ROOT, "node_modules", ".bin", "buf"), ["build", "--as-file-descriptor-set", "-o", "-"], {
    cwd: ROOT,
    maxBuffer: 64 * 1024 * 1024,
  });
}

if (import.meta.main) {
  const check = process.argv.includes("--check");
  const current = readFileSync(SPEC, "utf8");
  const derived = formatted(derive(current, buildImage()));
  if (check) {
    if (derived !== current) {
      console.error("gateway/openapi.yaml's schemas are not the protos': run 'npm run generate' and commit it.");
      process.exit(1);
    }
    console.log("gateway/openapi.yaml: the schemas made from the protos are current");
  } else if (derived !== current) {
    writeFileSync(SPEC, derived);
    console.log("gateway/openapi.yaml: schemas made from the protos written");
  }
}
