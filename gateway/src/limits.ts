import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { type DescField, type DescMessage, fromBinary, type Message } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { codeToHttpStatus, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { ErrorReason, type FieldViolation, invalidArgument, rpcError } from "@merch/kit";
import type { FastifyError, FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { answerForError, BODY_LIMIT, sendProblem } from "./problems.ts";

// The limits of the public door, the same on every protocol it speaks (REST, Connect JSON and
// binary, gRPC-Web): one body limit, refused from the declared length before a byte of the body
// is read; bounded JSON nesting; unknown fields refused; and a budget of body bytes in flight, so
// that no number of hostile requests makes the heap limit the thing that answers.

/** Deeper JSON than this is refused: the deepest valid request nests 2 levels. */
export const MAX_JSON_DEPTH = 32;

export interface DoorLimits {
  /** Body bytes the gateway holds at once, across all requests (a chunked body counts as BODY_LIMIT). */
  maxInflightBodyBytes: number;
  /** Path prefix of the Connect service, whose refusals are Connect errors, not problem details. */
  connectPrefix: string;
}

/** True when the JSON text nests deeper than `max` (a scan, so the refusal costs no parse). */
export function jsonTooDeep(text: string, max = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

function tooDeep(): ConnectError {
  return rpcError(ErrorReason.MALFORMED_JSON, `JSON nested deeper than ${MAX_JSON_DEPTH} levels is refused`);
}

function tooLarge(): ConnectError {
  return rpcError(ErrorReason.PAYLOAD_TOO_LARGE, `request bodies are limited to ${BODY_LIMIT} bytes`);
}

/**
 * A Connect refusal in the protocol the request spoke: gRPC-Web as a trailers-only answer, the
 * Connect protocol as its JSON error with the code's HTTP status.
 */
export function sendConnectError(req: FastifyRequest, reply: FastifyReply, err: ConnectError): FastifyReply {
  const type =
    String(req.headers["content-type"] ?? "")
      .split(";")[0]
      ?.trim() ?? "";
  if (type.startsWith("application/grpc")) {
    return reply
      .code(200)
      .header("content-type", type)
      .header("grpc-status", String(err.code))
      .header("grpc-message", encodeURIComponent(err.rawMessage))
      .send();
  }
  return reply
    .code(codeToHttpStatus(err.code))
    .type("application/json")
    .send(Buffer.from(errorToJsonBytes(err, {})));
}

/** A refusal in the form of the door it arrived at. */
function refuse(req: FastifyRequest, reply: FastifyReply, err: ConnectError, connectPrefix: string): FastifyReply {
  // No Connection: close: Node reads and drops the rest of a refused body (within the request
  // timeout), so that the client, still writing, is not reset before it reads the answer.
  if (req.url.startsWith(connectPrefix)) return sendConnectError(req, reply, err);
  return sendProblem(reply, answerForError(err));
}

/** Bytes a request's body may take: its declared length, or the whole limit when it streams. */
function declaredBytes(req: FastifyRequest): number {
  const length = req.headers["content-length"];
  if (length !== undefined) return Number(length) || 0;
  return req.headers["transfer-encoding"] !== undefined ? BODY_LIMIT : 0;
}

/**
 * The first onRequest hook: an oversized body is refused from its Content-Length before it is
 * read, and a body that would take the gateway past its in-flight budget waits for no buffer: it
 * is refused as service_unavailable (nothing was done, retry shortly). Bodies without a declared
 * length are held to the limit while they stream (Fastify's bodyLimit, Connect's readMaxBytes).
 */
const doorLimitsPlugin: FastifyPluginAsync<DoorLimits> = async (app, limits) => {
  let inflight = 0;
  app.addHook("onRequest", async (req, reply) => {
    const bytes = declaredBytes(req);
    if (bytes === 0) return;
    if (bytes > BODY_LIMIT) return refuse(req, reply, tooLarge(), limits.connectPrefix);
    if (inflight + bytes > limits.maxInflightBodyBytes) {
      reply.header("retry-after", "1");
      return refuse(
        req,
        reply,
        rpcError(
          ErrorReason.SERVICE_UNAVAILABLE,
          "the store is too busy right now; nothing was changed, retry shortly",
          {
            retryAfterS: 1,
          },
        ),
        limits.connectPrefix,
      );
    }
    inflight += bytes;
    let held = true;
    reply.raw.once("close", () => {
      if (held) inflight -= bytes;
      held = false;
    });
  });
};

export const doorLimits = fp(doorLimitsPlugin, { name: "door-limits" });

/** Fastify's JSON parser, refusing deep nesting before parsing. */
export function boundedJsonParser(app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser("error", "error");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (req, body, done) => {
    const text = typeof body === "string" ? body : body.toString("utf8");
    if (jsonTooDeep(text)) return done(tooDeep() as unknown as FastifyError, undefined);
    return parse(req, text, done);
  });
}

/** Fastify's own refusals (long path parameters, bad URLs) as problem details. */
export function frameworkErrors(err: FastifyError, _req: FastifyRequest, reply: FastifyReply): void {
  sendProblem(reply, answerForError(err));
}

const WELL_KNOWN = /^google\.protobuf\./;

/** The fields of a JSON value that `desc` does not have, as violations with their paths. */
export function unknownJsonFields(desc: DescMessage, value: unknown, path = ""): FieldViolation[] {
  if (typeof value !== "object" || value === null || Array.isArray(value) || WELL_KNOWN.test(desc.typeName)) return [];
  const out: FieldViolation[] = [];
  for (const [key, child] of Object.entries(value)) {
    const field = desc.fields.find((f) => f.jsonName === key || f.name === key);
    const at = path === "" ? key : `${path}.${key}`;
    if (field === undefined) {
      out.push({ field: at, message: "unknown field" });
      continue;
    }
    out.push(...unknownInField(field, child, at));
  }
  return out;
}

function unknownInField(field: DescField, value: unknown, path: string): FieldViolation[] {
  if (field.fieldKind === "message") return unknownJsonFields(field.message, value, path);
  if (field.fieldKind === "list" && field.listKind === "message" && Array.isArray(value)) {
    return value.flatMap((item, i) => unknownJsonFields(field.message, item, `${path}[${i}]`));
  }
  if (field.fieldKind === "map" && field.mapKind === "message" && typeof value === "object" && value !== null) {
    return Object.entries(value).flatMap(([k, v]) => unknownJsonFields(field.message, v, `${path}[${k}]`));
  }
  return [];
}

/** Unknown fields a binary message carried (protobuf keeps them in $unknown), with their paths. */
export function unknownBinaryFields(message: Message, path = ""): FieldViolation[] {
  const out: FieldViolation[] = [];
  const record = message as Message & { $unknown?: { no: number }[] } & Record<string, unknown>;
  for (const u of record.$unknown ?? []) {
    out.push({ field: path === "" ? `#${u.no}` : `${path}.#${u.no}`, message: "unknown field" });
  }
  for (const [key, value] of Object.entries(record)) {
    if (key.startsWith("$")) continue;
    const at = path === "" ? key : `${path}.${key}`;
    const children = Array.isArray(value) ? value : [value];
    for (const child of children) {
      if (typeof child === "object" && child !== null && "$typeName" in child) {
        out.push(...unknownBinaryFields(child as Message, at));
      } else if (typeof child === "object" && child !== null && "case" in child && "value" in child) {
        const inner = (child as { value: unknown }).value;
        if (typeof inner === "object" && inner !== null && "$typeName" in inner) {
          out.push(...unknownBinaryFields(inner as Message, at));
        }
      }
    }
  }
  return out;
}

/** Decompresses a body with Connect's encodings, never past the body limit. */
function decompress(encoding: string, bytes: Buffer): Buffer {
  try {
    if (encoding === "gzip") return gunzipSync(bytes, { maxOutputLength: BODY_LIMIT });
    if (encoding === "br") return brotliDecompressSync(bytes, { maxOutputLength: BODY_LIMIT });
  } catch (err) {
    if (err instanceof RangeError) throw tooLarge();
    throw rpcError(ErrorReason.BAD_REQUEST, `the body is not valid ${encoding}`);
  }
  throw rpcError(ErrorReason.UNSUPPORTED_MEDIA_TYPE, `content encoding ${encoding} is not supported (gzip, br)`);
}

/** The message in binary, checked: invalid bytes and unknown fields are invalid arguments. */
function checkBinary(input: DescMessage, bytes: Uint8Array): void {
  let message: Message;
  try {
    message = fromBinary(input, bytes);
  } catch (err) {
    throw invalidArgument([{ field: "body", message: `not a valid ${input.name}: ${(err as Error).message}` }]);
  }
  const unknown = unknownBinaryFields(message);
  if (unknown.length > 0) throw invalidArgument(unknown);
}

/** A JSON body, checked: nesting, syntax, an object, no unknown field. */
function checkJson(input: DescMessage, text: string): object {
  if (jsonTooDeep(text)) throw tooDeep();
  let value: unknown;
  try {
    value = text.trim() === "" ? {} : JSON.parse(text);
  } catch {
    throw rpcError(ErrorReason.MALFORMED_JSON, "the body is not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw rpcError(ErrorReason.MALFORMED_JSON, "the body must be a JSON object");
  }
  const unknown = unknownJsonFields(input, value);
  if (unknown.length > 0) throw invalidArgument(unknown);
  return value;
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

/**
 * The Connect scope's preHandler: every ShopService body is read here, within the limit (so a
 * stream without a length is cut at it), decompressed within it, and checked against the
 * method's request message before Connect sees it: deep JSON, unknown fields and bytes that are
 * no message are invalid arguments with a BadRequest (Connect itself would answer `internal`
 * to bad binary). connect-fastify then takes the checked body as it is (req.body).
 */
export function connectBodies(methods: ReadonlyMap<string, DescMessage>, connectPrefix: string) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    if (req.method !== "POST") return undefined;
    const input = methods.get(req.url.slice(connectPrefix.length).split("?")[0] ?? "");
    if (input === undefined) return undefined;
    const type = String(req.headers["content-type"] ?? "")
      .split(";")[0]
      ?.trim()
      .toLowerCase();
    try {
      let bytes = await readLimited(req, BODY_LIMIT);
      if (type === "application/json" || type === "application/proto") {
        const encoding = String(req.headers["content-encoding"] ?? "identity").toLowerCase();
        if (encoding !== "identity") {
          bytes = decompress(encoding, bytes);
          delete req.raw.headers["content-encoding"];
        }
        if (type === "application/json") {
          req.body = checkJson(input, bytes.toString("utf8"));
          return undefined;
        }
        checkBinary(input, bytes);
      } else if (type === "application/grpc-web" || type === "application/grpc-web+proto") {
        if (bytes.length < 5 || bytes.length !== 5 + bytes.readUInt32BE(1) || (bytes[0] ?? 0) & 0x80) {
          throw invalidArgument([{ field: "body", message: "a unary call takes exactly one gRPC-Web message" }]);
        }
        let payload = bytes.subarray(5);
        if ((bytes[0] ?? 0) & 1) {
          payload = decompress(String(req.headers["grpc-encoding"] ?? "identity").toLowerCase(), payload);
          delete req.raw.headers["grpc-encoding"];
          const head = Buffer.alloc(5);
          head.writeUInt32BE(payload.length, 1);
          bytes = Buffer.concat([head, payload]);
        }
        checkBinary(input, payload);
      }
      req.body = once(bytes);
      return undefined;
    } catch (err) {
      return refuse(req, reply, ConnectError.from(err), connectPrefix);
    }
  };
}

/** The request's body as text, refused once it passes `limit` bytes (nothing more is buffered). */
function readLimited(req: FastifyRequest, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const raw = req.raw;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(rpcError(ErrorReason.BAD_REQUEST, `the body could not be read: ${err.message}`));
    };
    const cleanup = () => {
      raw.off("data", onData);
      raw.off("end", onEnd);
      raw.off("error", onError);
    };
    raw.on("data", onData);
    raw.on("end", onEnd);
    raw.on("error", onError);
  });
}
