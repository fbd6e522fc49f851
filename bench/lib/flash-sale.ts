// The flash sale: `buyers` shoppers, each on a connection of their own opened beforehand, all ask
// for one unit of the same product at the same moment. With stock S, exactly S may succeed and
// every other buyer must hear 409 insufficient_stock; nothing may fail with 5xx.
import { Agent, request } from "node:http";
import { percentile } from "./load.ts";

export interface FlashSaleResult {
  buyers: number;
  created: number;
  soldOut: number;
  server: number;
  other: Record<string, number>;
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

function send(
  agent: Agent,
  url: URL,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ agent, host: url.hostname, port: url.port, method, path, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        text += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

export interface FlashSale {
  /** Every buyer orders at once; resolves when all have their answer. */
  fire(): Promise<FlashSaleResult>;
  close(): void;
}

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
  const agent = new Agent({ keepAlive: true, maxSockets: opts.buyers, maxFreeSockets: opts.buyers });
  try {
    await Promise.all(
      Array.from({ length: opts.buyers }, () => send(agent, url, "GET", `/products/${opts.productId}`, {})),
    );
  } catch (err) {
    agent.destroy();
    throw err;
  }
  return { fire: () => fire(agent, url, opts), close: () => agent.destroy() };
}

async function fire(
  agent: Agent,
  url: URL,
  opts: { productId: number; buyers: number; tokens: readonly string[] },
): Promise<FlashSaleResult> {
  const body = JSON.stringify({ product_id: opts.productId, quantity: 1 });
  const latencies: number[] = [];
  const counts = { created: 0, soldOut: 0, server: 0 };
  const other: Record<string, number> = {};
  let lastCreated = 0;
  let lastAnswer = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: opts.buyers }, async (_, i) => {
      const t = performance.now();
      let label: string;
      try {
        const res = await send(
          agent,
          url,
          "POST",
          "/orders",
          {
            "content-type": "application/json",
            "content-length": String(Buffer.byteLength(body)),
            authorization: `Bearer ${opts.tokens[i % opts.tokens.length]}`,
          },
          body,
        );
        const code = res.status === 409 ? (JSON.parse(res.body) as { code?: string }).code : undefined;
        label =
          res.status === 201
            ? "created"
            : res.status === 409 && code === "insufficient_stock"
              ? "soldOut"
              : res.status >= 500
                ? "server"
                : `${res.status} ${code ?? res.body.slice(0, 60)}`;
      } catch (err) {
        label = `error ${err instanceof Error ? err.message : String(err)}`;
      }
      const now = performance.now();
      latencies.push(now - t);
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
    buyers: opts.buyers,
    ...counts,
    other,
    sellOutMs: lastCreated === 0 ? Number.NaN : lastCreated - started,
    allAnsweredMs: lastAnswer - started,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
  };
}
