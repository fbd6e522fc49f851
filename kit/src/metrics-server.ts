import { createServer } from "node:http";
import { isIP } from "node:net";
import type { EnvReader } from "./config.ts";
import type { Logger } from "./logger.ts";

// /metrics is operator data (request counts by status, versions, heap, start time: every crash
// shows), so no service serves it on its public port: each has a metrics port of its own, on
// loopback unless told otherwise (compose: its private network, for Prometheus alone).

export interface MetricsListen {
  port: number;
  host: string;
}

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** METRICS_PORT (0: any free port) and METRICS_HOST (default 127.0.0.1), checked at start-up. */
export function readMetricsListen(e: EnvReader, defaultPort: number): MetricsListen {
  const host = e.string("METRICS_HOST", "127.0.0.1");
  if (isIP(host) === 0 && !HOSTNAME.test(host)) {
    e.problems.push(`METRICS_HOST must be an IP address or a host name, got "${host}"`);
  }
  return { port: e.int("METRICS_PORT", defaultPort, 0, 65535), host };
}

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

/** GET /metrics (Prometheus text) and nothing else, on its own port. */
export async function startMetricsServer(
  listen: MetricsListen,
  metrics: { text(): Promise<string>; contentType?: string },
  logger: Logger,
): Promise<MetricsServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== "/metrics" || (req.method !== "GET" && req.method !== "HEAD")) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    metrics.text().then(
      (body) => {
        res.writeHead(200, { "content-type": metrics.contentType ?? "text/plain; version=0.0.4; charset=utf-8" });
        res.end(req.method === "HEAD" ? undefined : body);
      },
      (err: unknown) => {
        logger.error({ err }, "metrics could not be collected");
        res.writeHead(500).end();
      },
    );
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listen.port, listen.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : listen.port;
  logger.info({ port, host: listen.host }, "serving /metrics");
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
