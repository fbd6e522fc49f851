import assert from "node:assert/strict";
import { connect } from "node:net";
import { join } from "node:path";
import type { ServiceProcess } from "@merch/testkit";
import { type ChannelRecord, readLogFile } from "@merch/testkit";

// What trust.test.ts and trust-login.test.ts share: calls made the way an attacker or a plain
// HTTP client makes them, and readers of what the services wrote.

/** The jti of a token the gateway issued: the db-service session it carries. */
export function sessionIdOf(token: string): string {
  const payload = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString()) as { jti?: unknown };
  assert.equal(typeof payload.jti, "string", "the token has a jti");
  return payload.jti as string;
}

export interface JsonAnswer {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

/** One unary Connect call with a JSON body over plain fetch, as `curl` (or an attacker) makes it. */
export async function connectJson(
  baseUrl: string,
  procedure: string,
  message: unknown,
  headers: Record<string, string> = {},
): Promise<JsonAnswer> {
  const res = await fetch(`${baseUrl}/${procedure}`, {
    method: "POST",
    headers: { "content-type": "application/json", "connect-protocol-version": "1", ...headers },
    body: JSON.stringify(message),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    body: text === "" ? {} : (JSON.parse(text) as JsonAnswer["body"]),
  };
}

/**
 * One Connect client-streaming call over plain fetch (HTTP/1.1): the request's enveloped JSON
 * messages, then what the server answered as its end-of-stream message. `error` is set when the
 * call failed.
 */
export async function connectStreamJson(
  baseUrl: string,
  procedure: string,
  messages: unknown[],
  headers: Record<string, string> = {},
): Promise<{ status: number; error?: { code: string; message?: string } | undefined }> {
  const envelope = (flags: number, data: Buffer) => {
    const head = Buffer.alloc(5);
    head.writeUInt8(flags, 0);
    head.writeUInt32BE(data.length, 1);
    return Buffer.concat([head, data]);
  };
  const body = Buffer.concat(messages.map((m) => envelope(0, Buffer.from(JSON.stringify(m)))));
  const res = await fetch(`${baseUrl}/${procedure}`, {
    method: "POST",
    headers: { "content-type": "application/connect+json", ...headers },
    body,
    signal: AbortSignal.timeout(15_000),
  });
  const answer = Buffer.from(await res.arrayBuffer());
  let error: { code: string; message?: string } | undefined;
  for (let at = 0; at + 5 <= answer.length; ) {
    const flags = answer.readUInt8(at);
    const length = answer.readUInt32BE(at + 1);
    const data = answer.subarray(at + 5, at + 5 + length);
    // 0b10 marks the end-of-stream message, which carries the error of a failed call.
    if (flags & 0b10) error = (JSON.parse(data.toString() || "{}") as { error?: typeof error }).error;
    at += 5 + length;
  }
  return { status: res.status, error };
}

/**
 * Sends bytes no fetch or node:http client would send (control characters in a header or in the
 * request line) and returns the raw answer; the connection ends within the deadline.
 */
export function rawHttp(port: number, request: string, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => socket.end(Buffer.from(request, "latin1")));
    let out = "";
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => {
      out += d;
    });
    socket.on("close", () => resolve(out));
    socket.on("error", reject);
    socket.setTimeout(timeoutMs, () => {
      socket.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms: ${JSON.stringify(out)}`));
    });
  });
}

/** The status line's code, the headers (lower-cased names) and the body of a raw HTTP/1.1 answer. */
export function parseRaw(raw: string): { status: number; headers: Map<string, string>; body: string } {
  const [head = "", body = ""] = raw.split("\r\n\r\n", 2);
  const [statusLine = "", ...lines] = head.split("\r\n");
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { status: Number(statusLine.split(" ")[1]), headers, body };
}

/** log-service's file sink of a store run without Kafka. */
function logFileOf(dataDir: string): string {
  return join(dataDir, "log-channel.jsonl");
}

/** Polls log-channel.jsonl until `done` holds for its records, within the deadline. */
export async function waitForLogFile(
  dataDir: string,
  done: (records: ChannelRecord[]) => boolean,
  what: string,
  timeoutMs = 30_000,
): Promise<ChannelRecord[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const records = readLogFile(logFileOf(dataDir));
    if (done(records)) return records;
    if (Date.now() > deadline) {
      const last = records
        .slice(-15)
        .map((r) => r.record.event)
        .join(", ");
      throw new Error(
        `${what}: not in log-channel.jsonl within ${timeoutMs} ms (${records.length} records; last: ${last})`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The JSON lines a service logged (pino), parsed; other lines are skipped. */
export function logLines(service: ServiceProcess): Record<string, unknown>[] {
  return service
    .output()
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
}

/** Polls until the gateway at `url` answers /readyz with 200, or fails at the deadline. */
export async function waitForReady(url: string, service: ServiceProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    if (service.child.exitCode !== null) {
      throw new Error(`${service.name} exited (${service.child.exitCode}) during start-up:\n${service.output()}`);
    }
    try {
      const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) });
      last = `${res.status}`;
      await res.arrayBuffer();
      if (res.ok) return;
    } catch (err) {
      last = String(err);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${service.name} at ${url} not ready within ${timeoutMs} ms (last: ${last})\n${service.output()}`);
}

/** Resolves with the exit code of a process expected to exit on its own, or fails at the deadline. */
export async function exitWithin(service: ServiceProcess, timeoutMs: number): Promise<number | string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${service.name} still running after ${timeoutMs} ms:\n${service.output()}`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([service.exited(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
