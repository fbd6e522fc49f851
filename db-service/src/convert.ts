import { create, type DescField, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { type Timestamp, TimestampSchema } from "@bufbuild/protobuf/wkt";
import { type Order, OrderSchema } from "@merch/gen/merch/store/v1/order_pb";
import { type Product, ProductSchema } from "@merch/gen/merch/store/v1/product_pb";
import { type User, UserSchema } from "@merch/gen/merch/store/v1/user_pb";
import type { OrderRow, ProductRow, UserRow } from "./schema.ts";

// "2026-11-22 08:15:30.123456+00", PostgreSQL's ISO output with TimeZone=UTC.
const PG_TIMESTAMP = /^(\d{4,}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?\+00$/;

/** Exact to the microsecond, unlike a JS Date. */
export function timestampFromPg(text: string): Timestamp {
  const m = PG_TIMESTAMP.exec(text);
  if (!m) throw new Error(`unexpected timestamp format: ${text}`);
  const seconds = Date.parse(`${m[1]}T${m[2]}Z`) / 1000;
  const nanos = Number((m[3] ?? "").padEnd(9, "0"));
  return create(TimestampSchema, { seconds: BigInt(seconds), nanos });
}

type Row = Readonly<Record<string, unknown>>;

/**
 * A row as its message, field by field of the message's descriptor: each field takes the column
 * drizzle names like it (created_at is createdAt in both). NULL leaves a field unset; a timestamp
 * keeps its microseconds; an enum's text is its value's name without the enum's prefix, in lower
 * case ('cancelled' is ORDER_STATUS_CANCELLED). A column the message does not name (a password
 * hash) is never copied, and a field with no column is a mistake caught at the first row.
 */
export function rowToMessage<Desc extends DescMessage>(desc: Desc): (row: Row) => MessageShape<Desc> {
  const fields = desc.fields.map((field) => ({ name: field.localName, convert: columnValue(field) }));
  return (row) => {
    const init: Record<string, unknown> = {};
    for (const { name, convert } of fields) {
      const value = row[name];
      if (value === undefined) throw new Error(`${desc.typeName}: the row has no column for ${name}`);
      if (value !== null) init[name] = convert(value);
    }
    return create(desc, init as MessageInitShape<Desc>);
  };
}

function columnValue(field: DescField): (value: unknown) => unknown {
  if (field.fieldKind === "message" && field.message.typeName === TimestampSchema.typeName) {
    return (value) => timestampFromPg(String(value));
  }
  if (field.fieldKind === "enum") {
    const byName = new Map(field.enum.values.map((v) => [v.localName.toLowerCase(), v.number]));
    return (value) => {
      const number = byName.get(String(value));
      if (number === undefined) throw new Error(`${field.enum.typeName} has no value for '${String(value)}'`);
      return number;
    };
  }
  if (field.fieldKind === "scalar") return (value) => value;
  throw new Error(`${field.parent.typeName}.${field.name}: no column maps to a ${field.fieldKind} field`);
}

export const productToProto: (row: ProductRow) => Product = rowToMessage(ProductSchema);
export const userToProto: (row: UserRow) => User = rowToMessage(UserSchema);
export const orderToProto: (row: OrderRow) => Order = rowToMessage(OrderSchema);
