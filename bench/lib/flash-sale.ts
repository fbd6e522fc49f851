// The flash sale: `buyers` shoppers, each on a connection of their own opened beforehand, all ask
// for one unit of the same product at the same moment. With stock S, exactly S may succeed and
// every other buyer must hear 409 insufficient_stock; nothing may fail with 5xx.
//
// The buyers are raw TCP sockets, not node:http clients: ten thousand http.ClientRequests with
// their parsers cost the bench process more CPU than the answers they wait for, and the bench must
// not be what slows the sale. Each buyer's request is one buffer made before the sale and written
// with one write; its answer is read up to the end of its head and Content-Length bytes of body.
import { readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { percentile } from "./load.ts";

export interface FlashSaleResult {
  buyers: number;
  created: number;
  soldOut: number;
  server: number;
  other: Record<string, number>;
  /** The 5xx answers by status and problem code: what to look for in the services' logs. */
  serverKinds: Record<string, number>;
  /** From the moment the orders went out until the last successful one was answered, ms (NaN: none). */
  sellOutMs: number;
  /** Until every buyer had an answer, ms. */
  allAnsweredMs: number;
  p50: number;
  p99: number;
}

interface Answer {
  status: number;
  body: string;
}

const HEAD_END = Buffer.from("\r\n\r\n");

/** One keep-alive connection that sends one whole request at a time and reads its answer. */
class Buyer {
  readonly socket: Socket;
  #pending: { resolve: (a: Answer) => void; reject: (e: Error) => void } | undefined;
  #chunks: Buffer[] = [];
  #length = 0;

  constructor(socket: Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Buffer) => this.#data(chunk));
    socket.on("error", (err) => this.#fail(err));
    socket.on("close", () => this.#fail(new Error("connection closed before the answer")));
  }

  send(request: Buffer): Promise<Answer> {
    return new Promise((resolve, reject) => {
      this.#pending = { resolve, reject };
      this.socket.write(request);
    });
  }

  #fail(err: Error) {
    const p = this.#pending;
    this.#pending = undefined;
    p?.reject(err);
  }

  #data(chunk: Buffer) {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    const all = this.#chunks.length === 1 ? chunk : Buffer.concat(this.#chunks, this.#length);
    const headEnd = all.indexOf(HEAD_END);
    if (headEnd < 0) return;
    const head = all.subarray(0, headEnd).toString("latin1");
    const status = Number(head.slice(9, 12));
    const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    const bodyLength = m ? Number(m[1]) : 0;
    const total = headEnd + HEAD_END.length + bodyLength;
    if (all.length < total) {
      this.#chunks = [all];
      return;
    }
    this.#chunks = [];
    this.#length = 0;
    const p = this.#pending;
    this.#pending = undefined;
    p?.resolve({ status, body: all.subarray(headEnd + HEAD_END.length, total).toString("utf8") });
  }
}

function requestBuffer(url: URL, method: string, path: string, headers: Record<string, string>, body = ""): Buffer {
  const lines = [`${method} ${path} HTTP/1.1`, `host: ${url.host}`, "connection: keep-alive"];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  if (body !== "" || method === "POST") lines.push(`content-length: ${Buffer.byteLength(body)}`);
  return Buffer.from(`${lines.join("\r\n")}\r\n\r\n${body}`);
}

function problemCode(body: string): string | undefined {
  try {
    return (JSON.parse(body) as { code?: string }).code;
  } catch {
    return undefined;
  }
}

export interface FlashSale {
  /** Every buyer orders at once; resolves when all have their answer. */
  fire(): Promise<FlashSaleResult>;
  close(): void;
}

/**
 * This process's open-file limit. Node raises its soft RLIMIT_NOFILE to the hard one at start, and
 * the services it spawns inherit that: the hard limit is what a sale of many buyers needs.
 */
function openFileLimit(): number {
  const line = readFileSync("/proc/self/limits", "utf8")
    .split("\n")
    .find((l) => l.startsWith("Max open files"));
  const soft = line?.split(/\s{2,}/)[1];
  return soft === undefined || soft === "unlimited" ? Number.POSITIVE_INFINITY : Number(soft);
}

/** Buyers connecting at once while the sale is prepared: the listen backlog is not the test. */
const CONNECTING_AT_ONCE = 256;

/**
 * Connects every buyer first (a product page each, each on its own connection), so that the sale
 * itself measures orders, not connection set-up.
 */
export async function prepareFlashSale(opts: {
  baseUrl: string;
  productId: number;
  buyers: number;
  tokens: readonly string[];
}): Promise<FlashSale> {
  const url = new URL(opts.baseUrl);
  // The bench holds a socket per buyer, and so does the gateway: both need the descriptors.
  const limit = openFileLimit();
  if (limit < opts.buyers + 512) {
    throw new Error(
      `${opts.buyers} buyers need more open files than this process may have (${limit}): raise the hard limit (ulimit -Hn, LimitNOFILE=, docker --ulimit nofile=)`,
    );
  }
  const buyers: Buyer[] = [];
  const page = requestBuffer(url, "GET", `/products/${opts.productId}`, {});
  const close = () => {
    for (const b of buyers) b.socket.destroy();
  };
  try {
    let next = 0;
    const connectOne = async (): Promise<void> => {
      while (next < opts.buyers) {
        next++;
        const socket = await new Promise<Socket>((resolve, reject) => {
          const s = connect({ host: url.hostname, port: Number(url.port), noDelay: true });
          s.once("connect", () => {
            s.off("error", reject);
            resolve(s);
          });
          s.once("error", reject);
        });
        const buyer = new Buyer(socket);
        buyers.push(buyer);
        const answer = await buyer.send(page).catch((err: Error) => {
          throw new Error(`buyer ${buyers.length} of ${opts.buyers} lost its connection: ${err.message}`);
        });
        if (answer.status !== 200) throw new Error(`a buyer's product page answered ${answer.status}: ${answer.body}`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONNECTING_AT_ONCE, opts.buyers) }, connectOne));
  } catch (err) {
    close();
    throw err;
  }
  return { fire: () => fire(buyers, url, opts), close };
}

async function fire(
  buyers: readonly Buyer[],
  url: URL,
  opts: { productId: number; tokens: readonly string[] },
): Promise<FlashSaleResult> {
  const body = JSON.stringify({ product_id: opts.productId, quantity: 1 });
  const requests = buyers.map((_, i) =>
    requestBuffer(
      url,
      "POST",
      "/orders",
      { "content-type": "application/json", authorization: `Bearer ${opts.tokens[i % opts.tokens.length]}` },
      body,
    ),
  );
  const latencies: number[] = [];
  const counts = { created: 0, soldOut: 0, server: 0 };
  const other: Record<string, number> = {};
  const serverKinds: Record<string, number> = {};
  let lastCreated = 0;
  let lastAnswer = 0;
  const started = performance.now();
  // Every request is written before any answer is read: the buyers ask at the same moment.
  const answers = buyers.map((b, i) => b.send(requests[i] as Buffer));
  await Promise.all(
    answers.map(async (answer) => {
      let label: string;
      try {
        const res = await answer;
        const code = res.status === 409 || res.status >= 500 ? problemCode(res.body) : undefined;
        label =
          res.status === 201
            ? "created"
            : res.status === 409 && code === "insufficient_stock"
              ? "soldOut"
              : res.status >= 500
                ? "server"
                : `${res.status} ${code ?? res.body.slice(0, 60)}`;
        if (label === "server") {
          const key = `${res.status} ${code ?? res.body.slice(0, 60)}`;
          serverKinds[key] = (serverKinds[key] ?? 0) + 1;
        }
      } catch (err) {
        label = `error ${err instanceof Error ? err.message : String(err)}`;
      }
      const now = performance.now();
      latencies.push(now - started);
      lastAnswer = Math.max(lastAnswer, now);
      if (label === "created" || label === "soldOut" || label === "server") {
        counts[label]++;
        if (label === "created") lastCreated = Math.max(lastCreated, now);
      } else {
        other[label] = (other[label] ?? 0) + 1;
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  return {
    buyers: buyers.length,
    ...counts,
    other,
    serverKinds,
    sellOutMs: lastCreated === 0 ? Number.NaN : lastCreated - started,
    allAnsweredMs: lastAnswer - started,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
  };
}
