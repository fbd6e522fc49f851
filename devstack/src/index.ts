// devstack: the whole store on one machine, for `npm start`, the end-to-end tests and the
// benchmarks, above the services (it starts them as processes and reads what they publish), and
// the outside tools those use: a browser, Prometheus, a trace backend. Never in an image.
export { type ApiResponse, type CallOptions, client, documentedStatuses, seen } from "./api.ts";
export { launchChromium } from "./chromium.ts";
export { requireCommand } from "./commands.ts";
export { checkMetrics, type PrometheusServer, startPrometheus } from "./prometheus.ts";
export { type Stack, type StackOptions, startStack } from "./stack.ts";
export { startTestStore, TEST_JWT_SECRET, type TestStore } from "./store.ts";
export { type Supervisor, superviseStack } from "./supervisor.ts";
export { startZipkin, type ZipkinServer, type ZipkinSpan } from "./zipkin.ts";
