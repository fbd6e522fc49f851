import { create, type DescField, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { type Timestamp, TimestampSchema, timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { OrderSchema, ProductSchema, UserSchema } from "@merch/gen/merch/shop/v1/shop_pb";

// The REST API's JSON and the store's messages, one mapping each way, field by field of the
// merch.shop.v1 message's descriptor, so that a new field needs no line here. The REST schemas in
// openapi.yaml are made from the same descriptors by the same rules (scripts/rest-schemas.ts):
// a field's JSON name is its proto name; an answer has every field, an unset message being null;
// a Timestamp is RFC 3339 in UTC, to the millisecond; an enum is its value's name without the
// enum's prefix, in lower case. db-service's messages have the same fields as the shop's
// (convert.test.ts holds them to it), so their answers are written with the shop's descriptors.

export type JsonObject = { [key: string]: unknown };

type Writer = (value: unknown) => unknown;

/** The JSON of a message of `desc`'s shape (or of a message with the same fields). */
export function restJson(desc: DescMessage): (message: object | undefined) => JsonObject {
  const fields = desc.fields.map((field) => ({ from: field.localName, to: field.name, write: jsonValue(field) }));
  return (message) => {
    if (message === undefined) throw new Error(`db-service sent no ${desc.name}`);
    const source = message as Record<string, unknown>;
    const out: JsonObject = {};
    for (const { from, to, write } of fields) out[to] = write(source[from]);
    return out;
  };
}

function jsonValue(field: DescField): Writer {
  const one = valueWriter(field);
  return field.fieldKind === "list" ? (values) => (values as unknown[]).map(one) : one;
}

function valueWriter(field: DescField): Writer {
  const kind = field.fieldKind === "list" ? field.listKind : field.fieldKind;
  if (kind === "enum" && field.enum) {
    const names = new Map(field.enum.values.map((v) => [v.number, v.localName.toLowerCase()]));
    return (value) => names.get(value as number) ?? null;
  }
  if (kind === "message" && field.message) {
    if (field.message.typeName === TimestampSchema.typeName) {
      return (value) => (value === undefined ? null : timestampDate(value as Timestamp).toISOString());
    }
    const nested = restJson(field.message);
    return (value) => (value === undefined ? null : nested(value as object));
  }
  if (kind === "scalar") return (value) => value ?? null;
  throw new Error(`${field.parent.typeName}.${field.name}: a ${field.fieldKind} field has no REST form`);
}

/**
 * A REST request body, already validated against its schema, as the message it mirrors: the
 * member of a oneof that is present becomes the oneof's case, an enum's name its number.
 */
export function fromRestJson<Desc extends DescMessage>(desc: Desc, body: unknown): MessageShape<Desc> {
  const json = (body ?? {}) as JsonObject;
  const init: Record<string, unknown> = {};
  for (const field of desc.fields) {
    const value = json[field.name];
    if (value === undefined || value === null) continue;
    const read = (v: unknown): unknown => {
      if (field.fieldKind === "enum" || (field.fieldKind === "list" && field.listKind === "enum")) {
        return field.enum?.values.find((e) => e.localName.toLowerCase() === v)?.number;
      }
      if (field.message?.typeName === TimestampSchema.typeName) return timestampFromDate(new Date(String(v)));
      if (field.message) return fromRestJson(field.message, v);
      return v;
    };
    const converted = field.fieldKind === "list" ? (value as unknown[]).map(read) : read(value);
    if (field.oneof) init[field.oneof.localName] = { case: field.localName, value: converted };
    else init[field.localName] = converted;
  }
  return create(desc, init as MessageInitShape<Desc>);
}

export const productJson = restJson(ProductSchema);
export const userJson = restJson(UserSchema);
export const orderJson = restJson(OrderSchema);
