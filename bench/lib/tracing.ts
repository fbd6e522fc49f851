// The hook for issue 12's budget ("tracing must not cost more than 10 % of GET /products/{id} or
// POST /orders throughput with a real exporter running"): a trace collector, and the environment
// that points the services at it. The bench restarts the services with this environment and runs
// the two scenarios again. Until the services read OTEL_EXPORTER_OTLP_ENDPOINT, the traced run
// is the same as the plain one and the collector receives nothing; the report says so.
import { startZipkin } from "@merch/devstack";
import { findProcess, type Watched } from "./cpu.ts";

export interface Tracing {
  /** What the services are started with. */
  env: Record<string, string>;
  /** The collector's processes: Zipkin's JVM (the OTLP receiver runs inside the bench process). */
  watched: Watched[];
  /** Spans the collector has received so far. */
  spans(): number;
  stop(): Promise<void>;
}

export async function startTracing(): Promise<Tracing> {
  const zipkin = await startZipkin();
  let pid: number | undefined;
  return {
    env: { OTEL_EXPORTER_OTLP_ENDPOINT: zipkin.otlpEndpoint },
    watched: [
      {
        name: "Zipkin",
        // devstack runs Zipkin in a directory named after this process (makeRunDir).
        pid: () => {
          pid ??= findProcess(
            (cmd, cwd) => cmd.includes("zipkin-server") && cwd.includes(`merch-zipkin-${process.pid}-`),
          );
          return pid;
        },
      },
    ],
    spans: () => zipkin.otlpReceived().spans,
    stop: () => zipkin.stop(),
  };
}
