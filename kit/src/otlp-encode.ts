import type { HrTime, Link, SpanContext } from "@opentelemetry/api";
import type { InstrumentationScope } from "@opentelemetry/core";
import type { ReadableSpan } from "@opentelemetry/sdk-trace";

// OTLP protobuf written by hand, span by span, into one reused buffer. The SDK's exporter keeps
// every finished span until its batch goes (up to a second), then turns each into a tree of
// plain objects and encodes that: at a few thousand spans a second, the spans outlive the young
// generation and the objects are garbage of their own. Written here, a span's bytes are all that
// is kept, and the span dies young. The fields and their values are the ones the SDK's
// transformer (@opentelemetry/otlp-transformer) gives, as the test against it shows.

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

// OTLP span flags: the W3C trace flags, and whether the parent (or the link) is remote.
const FLAGS_HAS_IS_REMOTE = 0x100;
const FLAGS_IS_REMOTE = 0x200;

const TWO_32 = 2 ** 32;

/** A hex digit's value ('0'-'9', 'a'-'f', 'A'-'F'). */
function nibble(c: number): number {
  return c <= 57 ? c - 48 : (c | 32) - 87;
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** A growable protobuf writer; nested messages are written in place, their length fixed after. */
export class ProtoWriter {
  buf: Buffer;
  pos = 0;

  constructor(initialBytes = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  /** The bytes written so far (a view, valid until the next write or reset). */
  bytes(): Buffer {
    return this.buf.subarray(0, this.pos);
  }

  reset(): void {
    this.pos = 0;
  }

  ensure(more: number): void {
    if (this.pos + more <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + more) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** A non-negative integer up to 2^53. */
  varint(n: number): void {
    this.ensure(10);
    const buf = this.buf;
    while (n >= 128) {
      buf[this.pos++] = (n % 128) | 128;
      n = Math.floor(n / 128);
    }
    buf[this.pos++] = n;
  }

  tag(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  /** A signed int64 (a negative one takes ten bytes, as protobuf's two's complement asks). */
  int64(field: number, n: number): void {
    this.tag(field, WIRE_VARINT);
    if (n >= 0) {
      this.varint(n);
      return;
    }
    let v = BigInt.asUintN(64, BigInt(n));
    this.ensure(10);
    while (v >= 128n) {
      this.buf[this.pos++] = Number(v & 127n) | 128;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
  }

  uint32(field: number, n: number): void {
    if (n === 0) return;
    this.tag(field, WIRE_VARINT);
    this.varint(n);
  }

  fixed32(field: number, n: number): void {
    this.tag(field, WIRE_FIXED32);
    this.ensure(4);
    this.buf.writeUInt32LE(n >>> 0, this.pos);
    this.pos += 4;
  }

  /** An HrTime as nanoseconds since the epoch, exactly (the product passes 2^53). */
  time(field: number, [seconds, nanos]: HrTime): void {
    this.tag(field, WIRE_FIXED64);
    this.ensure(8);
    // seconds × 10^9 + nanos = high × 2^32 + low, in steps that stay below 2^53.
    const a = Math.floor(seconds / 65536) * 1e9;
    const t = (a % 65536) * 65536 + (seconds % 65536) * 1e9 + nanos;
    const high = Math.floor(a / 65536) + Math.floor(t / TWO_32);
    this.buf.writeUInt32LE(t % TWO_32, this.pos);
    this.buf.writeUInt32LE(high, this.pos + 4);
    this.pos += 8;
  }

  double(field: number, n: number): void {
    this.tag(field, WIRE_FIXED64);
    this.ensure(8);
    this.buf.writeDoubleLE(n, this.pos);
    this.pos += 8;
  }

  string(field: number, s: string): void {
    this.tag(field, WIRE_LEN);
    // Up to 42 UTF-16 units take at most 126 bytes: a one-byte length, written after. Short
    // ASCII (names, keys, most values) is copied here: a call into Buffer's native writer costs
    // more than the copy.
    if (s.length <= 42) {
      this.ensure(1 + s.length * 3);
      const buf = this.buf;
      const start = this.pos + 1;
      let i = 0;
      for (; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[start + i] = c;
      }
      const n = i === s.length ? i : buf.write(s, start, "utf8");
      buf[this.pos] = n;
      this.pos = start + n;
      return;
    }
    const n = Buffer.byteLength(s);
    this.varint(n);
    this.ensure(n);
    this.pos += this.buf.write(s, this.pos, n, "utf8");
  }

  /**
   * A trace or span id, lowercase hex in the SDK (checked by it, by the W3C propagator and by
   * linkToIds), raw bytes on the wire; decoded here rather than by a native call per id.
   */
  hexId(field: number, hex: string): void {
    const n = hex.length >>> 1;
    this.tag(field, WIRE_LEN);
    this.ensure(1 + n);
    const buf = this.buf;
    buf[this.pos++] = n;
    for (let i = 0; i < n; i++)
      buf[this.pos++] = (nibble(hex.charCodeAt(2 * i)) << 4) | nibble(hex.charCodeAt(2 * i + 1));
  }

  raw(field: number, bytes: Uint8Array): void {
    this.tag(field, WIRE_LEN);
    this.varint(bytes.length);
    this.append(bytes);
  }

  append(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /** Opens a nested message: returns where its length goes, for end(). */
  begin(field: number): number {
    this.tag(field, WIRE_LEN);
    this.ensure(1);
    return this.pos++;
  }

  /** Closes a nested message: one byte was kept for its length; a longer one moves the body. */
  end(at: number): void {
    const length = this.pos - at - 1;
    if (length < 128) {
      this.buf[at] = length;
      return;
    }
    const extra = varintSize(length) - 1;
    this.ensure(extra);
    this.buf.copyWithin(at + 1 + extra, at + 1, this.pos);
    const end = this.pos + extra;
    this.pos = at;
    this.varint(length);
    this.pos = end;
  }
}

/** An attribute's value: AttributeValue, and what the transformer also takes (bytes, maps). */
type Attributes = Readonly<Record<string, unknown>>;

/** An AnyValue's body, as the SDK's transformer maps JavaScript values to it. */
function anyValue(w: ProtoWriter, value: unknown): void {
  switch (typeof value) {
    case "string":
      w.string(1, value);
      return;
    case "boolean":
      w.tag(2, WIRE_VARINT);
      w.varint(value ? 1 : 0);
      return;
    case "number":
      if (Number.isSafeInteger(value)) w.int64(3, value);
      else w.double(4, value);
      return;
  }
  if (value instanceof Uint8Array) {
    w.raw(7, value);
  } else if (Array.isArray(value)) {
    const array = w.begin(5);
    for (const v of value) {
      const item = w.begin(1);
      anyValue(w, v);
      w.end(item);
    }
    w.end(array);
  } else if (value !== null && typeof value === "object") {
    const list = w.begin(6);
    keyValues(w, 1, value as Attributes);
    w.end(list);
  }
}

/** Attributes as repeated KeyValue under `field`. */
export function keyValues(w: ProtoWriter, field: number, attributes: Attributes): void {
  for (const key in attributes) {
    const kv = w.begin(field);
    w.string(1, key);
    const value = w.begin(2);
    anyValue(w, attributes[key]);
    w.end(value);
    w.end(kv);
  }
}

function flags(context: SpanContext | undefined, isRemote: boolean | undefined): number {
  return ((context?.traceFlags ?? 0) & 0xff) | FLAGS_HAS_IS_REMOTE | (isRemote ? FLAGS_IS_REMOTE : 0);
}

function link(w: ProtoWriter, l: Link & { droppedAttributesCount?: number }): void {
  const at = w.begin(13);
  w.hexId(1, l.context.traceId);
  w.hexId(2, l.context.spanId);
  const state = l.context.traceState?.serialize();
  if (state) w.string(3, state);
  if (l.attributes) keyValues(w, 4, l.attributes);
  w.uint32(5, l.droppedAttributesCount ?? 0);
  w.fixed32(6, flags(l.context, l.context.isRemote));
  w.end(at);
}

/** One Span message, as field `field` of the message being written (ScopeSpans.spans is 2). */
export function writeSpan(w: ProtoWriter, span: ReadableSpan, field = 2): void {
  const at = w.begin(field);
  const context = span.spanContext();
  w.hexId(1, context.traceId);
  w.hexId(2, context.spanId);
  const state = context.traceState?.serialize();
  if (state) w.string(3, state);
  const parent = span.parentSpanContext;
  if (parent?.spanId) w.hexId(4, parent.spanId);
  w.string(5, span.name);
  w.uint32(6, span.kind + 1);
  w.time(7, span.startTime);
  w.time(8, span.endTime);
  keyValues(w, 9, span.attributes);
  w.uint32(10, span.droppedAttributesCount);
  for (const event of span.events) {
    const e = w.begin(11);
    w.time(1, event.time);
    w.string(2, event.name);
    if (event.attributes) keyValues(w, 3, event.attributes);
    w.uint32(4, event.droppedAttributesCount ?? 0);
    w.end(e);
  }
  w.uint32(12, span.droppedEventsCount);
  for (const l of span.links) link(w, l);
  w.uint32(14, span.droppedLinksCount);
  const status = w.begin(15);
  if (span.status.message) w.string(2, span.status.message);
  w.uint32(3, span.status.code);
  w.end(status);
  w.fixed32(16, flags(context, parent?.isRemote));
  w.end(at);
}

/** A Resource message's body: its attributes. */
export function writeResource(w: ProtoWriter, attributes: Attributes): void {
  keyValues(w, 1, attributes);
}

/** An InstrumentationScope message's body. */
export function writeScope(w: ProtoWriter, scope: InstrumentationScope): void {
  w.string(1, scope.name);
  if (scope.version) w.string(2, scope.version);
}
