// Reads OTLP/HTTP trace export requests (ExportTraceServiceRequest, opentelemetry-proto v1) in
// both encodings the OpenTelemetry exporters send: binary protobuf and OTLP/JSON. Only the
// fields a trace backend stores are kept; unknown fields are skipped, as the spec requires.

export type AttributeValue = string | number | boolean | AttributeValue[] | { [key: string]: AttributeValue };

export interface OtlpEvent {
  timeUnixNano: bigint;
  name: string;
  attributes: Record<string, AttributeValue>;
}

export interface OtlpSpan {
  /** lowercase hex: 32 digits for the trace id, 16 for span ids; parentSpanId is "" for a root */
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  /** SpanKind: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer */
  kind: number;
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  attributes: Record<string, AttributeValue>;
  events: OtlpEvent[];
  /** StatusCode: 0 unset, 1 ok, 2 error */
  status: { code: number; message: string };
  resource: Record<string, AttributeValue>;
  scope: { name: string; version: string };
}

export function decodeTraceRequest(body: Uint8Array, contentType: string): OtlpSpan[] {
  const mediaType = contentType.split(";")[0]?.trim().toLowerCase();
  if (mediaType === "application/x-protobuf") return decodeProtobuf(body);
  if (mediaType === "application/json") return decodeJson(JSON.parse(Buffer.from(body).toString("utf8")));
  throw new UnsupportedMediaType(contentType);
}

export class UnsupportedMediaType extends Error {
  constructor(contentType: string) {
    super(`OTLP/HTTP bodies are application/x-protobuf or application/json, not '${contentType}'`);
  }
}

// ---- protobuf ----------------------------------------------------------------------------

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

class Reader {
  private readonly buf: Uint8Array;
  private readonly view: DataView;
  private readonly end: number;
  private pos: number;

  constructor(buf: Uint8Array, start = 0, end = buf.length) {
    this.buf = buf;
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.pos = start;
    this.end = end;
  }

  more(): boolean {
    return this.pos < this.end;
  }

  varint(): bigint {
    let result = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      this.need(1);
      const byte = this.buf[this.pos++] as number;
      result |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return result;
    }
    throw new Error("malformed protobuf: varint longer than 10 bytes");
  }

  fixed64(): bigint {
    this.need(8);
    const value = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return value;
  }

  double(): number {
    this.need(8);
    const value = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return value;
  }

  message(): Reader {
    const length = this.length();
    const sub = new Reader(this.buf, this.pos, this.pos + length);
    this.pos += length;
    return sub;
  }

  bytes(): Uint8Array {
    const length = this.length();
    const slice = this.buf.subarray(this.pos, this.pos + length);
    this.pos += length;
    return slice;
  }

  string(): string {
    return Buffer.from(this.bytes()).toString("utf8");
  }

  skip(wire: number): void {
    if (wire === VARINT) this.varint();
    else if (wire === LEN) {
      // Read first: `this.pos += this.length()` would add to the position from before the length.
      const length = this.length();
      this.pos += length;
    } else if (wire === I64 || wire === I32) {
      const size = wire === I64 ? 8 : 4;
      this.need(size);
      this.pos += size;
    } else throw new Error(`malformed protobuf: wire type ${wire}`);
  }

  private length(): number {
    const length = Number(this.varint());
    this.need(length);
    return length;
  }

  private need(n: number): void {
    if (this.pos + n > this.end) throw new Error("malformed protobuf: truncated message");
  }
}

// Walks a message's fields, keyed "field:wiretype"; `read` returns false for fields it skips.
function eachField(r: Reader, read: (key: string) => boolean): void {
  while (r.more()) {
    const key = Number(r.varint());
    const wire = key & 7;
    if (!read(`${key >>> 3}:${wire}`)) r.skip(wire);
  }
}

function decodeProtobuf(body: Uint8Array): OtlpSpan[] {
  const spans: OtlpSpan[] = [];
  const request = new Reader(body);
  eachField(request, (key) => {
    if (key !== "1:2") return false; // ExportTraceServiceRequest.resource_spans
    spans.push(...protoResourceSpans(request.message()));
    return true;
  });
  return spans;
}

function protoResourceSpans(r: Reader): OtlpSpan[] {
  const resource: Record<string, AttributeValue> = {};
  const scopeSpans: Reader[] = [];
  eachField(r, (key) => {
    if (key === "1:2") {
      const res = r.message();
      eachField(res, (k) => k === "1:2" && protoKeyValue(res.message(), resource));
    } else if (key === "2:2") scopeSpans.push(r.message());
    else return false;
    return true;
  });
  // Scope spans are decoded last: the resource they share may come after them on the wire.
  return scopeSpans.flatMap((s) => protoScopeSpans(s, resource));
}

function protoScopeSpans(r: Reader, resource: Record<string, AttributeValue>): OtlpSpan[] {
  const scope = { name: "", version: "" };
  const spans: Reader[] = [];
  eachField(r, (key) => {
    if (key === "1:2") {
      const sc = r.message();
      eachField(sc, (k) => {
        if (k === "1:2") scope.name = sc.string();
        else if (k === "2:2") scope.version = sc.string();
        else return false;
        return true;
      });
    } else if (key === "2:2") spans.push(r.message());
    else return false;
    return true;
  });
  return spans.map((s) => protoSpan(s, resource, scope));
}

function protoSpan(r: Reader, resource: Record<string, AttributeValue>, scope: OtlpSpan["scope"]): OtlpSpan {
  const span = emptySpan(resource, scope);
  eachField(r, (key) => {
    switch (key) {
      case "1:2":
        span.traceId = hex(r.bytes());
        break;
      case "2:2":
        span.spanId = hex(r.bytes());
        break;
      case "4:2":
        span.parentSpanId = hex(r.bytes());
        break;
      case "5:2":
        span.name = r.string();
        break;
      case "6:0":
        span.kind = Number(r.varint());
        break;
      case "7:1":
        span.startTimeUnixNano = r.fixed64();
        break;
      case "8:1":
        span.endTimeUnixNano = r.fixed64();
        break;
      case "9:2":
        protoKeyValue(r.message(), span.attributes);
        break;
      case "11:2":
        span.events.push(protoEvent(r.message()));
        break;
      case "15:2":
        span.status = protoStatus(r.message());
        break;
      default:
        return false;
    }
    return true;
  });
  return span;
}

function protoEvent(r: Reader): OtlpEvent {
  const event: OtlpEvent = { timeUnixNano: 0n, name: "", attributes: {} };
  eachField(r, (key) => {
    if (key === "1:1") event.timeUnixNano = r.fixed64();
    else if (key === "2:2") event.name = r.string();
    else if (key === "3:2") protoKeyValue(r.message(), event.attributes);
    else return false;
    return true;
  });
  return event;
}

function protoStatus(r: Reader): OtlpSpan["status"] {
  const status = { code: 0, message: "" };
  eachField(r, (key) => {
    if (key === "2:2") status.message = r.string();
    else if (key === "3:0") status.code = Number(r.varint());
    else return false;
    return true;
  });
  return status;
}

function protoKeyValue(r: Reader, into: Record<string, AttributeValue>): true {
  let key = "";
  let value: AttributeValue = "";
  eachField(r, (k) => {
    if (k === "1:2") key = r.string();
    else if (k === "2:2") value = protoAnyValue(r.message());
    else return false;
    return true;
  });
  into[key] = value;
  return true;
}

function protoAnyValue(r: Reader): AttributeValue {
  let value: AttributeValue = "";
  eachField(r, (key) => {
    switch (key) {
      case "1:2":
        value = r.string();
        break;
      case "2:0":
        value = r.varint() !== 0n;
        break;
      case "3:0":
        value = int64(BigInt.asIntN(64, r.varint()));
        break;
      case "4:1":
        value = r.double();
        break;
      case "5:2": {
        const list: AttributeValue[] = [];
        const array = r.message();
        eachField(array, (k) => k === "1:2" && list.push(protoAnyValue(array.message())) > 0);
        value = list;
        break;
      }
      case "6:2": {
        const map: Record<string, AttributeValue> = {};
        const kvlist = r.message();
        eachField(kvlist, (k) => k === "1:2" && protoKeyValue(kvlist.message(), map));
        value = map;
        break;
      }
      case "7:2":
        value = Buffer.from(r.bytes()).toString("base64");
        break;
      default:
        return false;
    }
    return true;
  });
  return value;
}

// ---- OTLP/JSON ---------------------------------------------------------------------------

interface JsonKeyValue {
  key?: string;
  value?: JsonAnyValue;
}

interface JsonAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number | string;
  arrayValue?: { values?: JsonAnyValue[] };
  kvlistValue?: { values?: JsonKeyValue[] };
  bytesValue?: string;
}

interface JsonSpan {
  traceId?: string;
  spanId?: string;
  parentSpanId?: string;
  name?: string;
  kind?: number | string;
  startTimeUnixNano?: string | number;
  endTimeUnixNano?: string | number;
  attributes?: JsonKeyValue[];
  events?: { timeUnixNano?: string | number; name?: string; attributes?: JsonKeyValue[] }[];
  status?: { code?: number | string; message?: string };
}

interface JsonRequest {
  resourceSpans?: {
    resource?: { attributes?: JsonKeyValue[] };
    scopeSpans?: { scope?: { name?: string; version?: string }; spans?: JsonSpan[] }[];
  }[];
}

const SPAN_KINDS = ["UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"];
const STATUS_CODES = ["UNSET", "OK", "ERROR"];

function decodeJson(request: JsonRequest): OtlpSpan[] {
  return (request.resourceSpans ?? []).flatMap((rs) => {
    const resource = jsonAttributes(rs.resource?.attributes);
    return (rs.scopeSpans ?? []).flatMap((ss) => {
      const scope = { name: ss.scope?.name ?? "", version: ss.scope?.version ?? "" };
      return (ss.spans ?? []).map((s): OtlpSpan => {
        const span = emptySpan(resource, scope);
        span.traceId = jsonId(s.traceId);
        span.spanId = jsonId(s.spanId);
        span.parentSpanId = jsonId(s.parentSpanId);
        span.name = s.name ?? "";
        span.kind = jsonEnum(s.kind, "SPAN_KIND_", SPAN_KINDS);
        span.startTimeUnixNano = BigInt(s.startTimeUnixNano ?? 0);
        span.endTimeUnixNano = BigInt(s.endTimeUnixNano ?? 0);
        span.attributes = jsonAttributes(s.attributes);
        span.events = (s.events ?? []).map((e) => ({
          timeUnixNano: BigInt(e.timeUnixNano ?? 0),
          name: e.name ?? "",
          attributes: jsonAttributes(e.attributes),
        }));
        span.status = {
          code: jsonEnum(s.status?.code, "STATUS_CODE_", STATUS_CODES),
          message: s.status?.message ?? "",
        };
        return span;
      });
    });
  });
}

function jsonAttributes(list: JsonKeyValue[] | undefined): Record<string, AttributeValue> {
  const attributes: Record<string, AttributeValue> = {};
  for (const kv of list ?? []) attributes[kv.key ?? ""] = jsonAnyValue(kv.value);
  return attributes;
}

function jsonAnyValue(v: JsonAnyValue | undefined): AttributeValue {
  if (!v) return "";
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return int64(BigInt(v.intValue));
  // Non-finite doubles arrive as the strings "NaN", "Infinity" and "-Infinity".
  if (v.doubleValue !== undefined) return Number(v.doubleValue);
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(jsonAnyValue);
  if (v.kvlistValue) return jsonAttributes(v.kvlistValue.values);
  if (v.bytesValue !== undefined) return v.bytesValue;
  return "";
}

// OTLP/JSON carries ids as hex, unlike protobuf's JSON mapping (base64); accept both.
function jsonId(id: string | undefined): string {
  if (!id) return "";
  if (/^[0-9a-fA-F]+$/.test(id) && (id.length === 16 || id.length === 32)) return id.toLowerCase();
  return hex(Buffer.from(id, "base64"));
}

function jsonEnum(value: number | string | undefined, prefix: string, names: string[]): number {
  if (typeof value === "number") return value;
  if (value === undefined) return 0;
  const index = names.indexOf(value.replace(prefix, ""));
  return index < 0 ? Number(value) || 0 : index;
}

// ---- shared ------------------------------------------------------------------------------

function emptySpan(resource: Record<string, AttributeValue>, scope: OtlpSpan["scope"]): OtlpSpan {
  return {
    traceId: "",
    spanId: "",
    parentSpanId: "",
    name: "",
    kind: 0,
    startTimeUnixNano: 0n,
    endTimeUnixNano: 0n,
    attributes: {},
    events: [],
    status: { code: 0, message: "" },
    resource,
    scope,
  };
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

// Attribute values end up as JSON and Zipkin tag strings, where a bigint cannot go; an integer
// beyond 2^53 keeps its exact digits as a string.
function int64(value: bigint): number | string {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(value)
    : value.toString();
}
