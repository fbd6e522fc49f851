// Tracing off and on (issue 12): each on freshly started services, so that the two differ in
// tracing alone (a gateway that has served the whole run costs more per request than a new one).
import type { Measurer } from "./measure.ts";
import { type BenchOptions, wanted } from "./options.ts";
import type { Measured, Report } from "./report.ts";
import { httpScenario, loads, type ScenarioContext } from "./scenarios.ts";
import { startTracing, type Tracing } from "./tracing.ts";

/** The traced pair's rows and the report's note, or nothing when the run does not ask for them. */
export async function measureTracing(
  measurer: Measurer,
  ctx: ScenarioContext,
): Promise<{ measured: Measured[]; report: Report["tracing"]; tracing: Tracing } | undefined> {
  const options: BenchOptions = ctx.options;
  const traced = ["product", "orders"].filter(
    (id) => wanted(options, `traced-${id}`) || wanted(options, `untraced-${id}`),
  );
  if (!options.tracing || traced.length === 0) return undefined;
  const load = loads(ctx);
  const pair = (on: boolean) =>
    [
      httpScenario(
        ctx,
        `${on ? "traced" : "untraced"}-product`,
        `\`GET /products/{id}\`, fresh services, tracing ${on ? "on" : "off"}`,
        load.products,
      ),
      httpScenario(
        ctx,
        `${on ? "traced" : "untraced"}-orders`,
        `\`POST /orders\`, fresh services, tracing ${on ? "on" : "off"}`,
        load.orders(false),
        { orders: true },
      ),
    ].filter((s) => traced.some((id) => s.id.endsWith(`-${id}`)));
  const measured: Measured[] = [];
  console.error("starting Zipkin; restarting the services without tracing...");
  const tracing = await startTracing();
  measurer.extraWatched = tracing.watched;
  await ctx.store.restartServices(measurer.servicesEnv);
  for (const s of pair(false)) measured.push(await measurer.measure(s));
  console.error("restarting the services with OTEL_EXPORTER_OTLP_ENDPOINT...");
  measurer.servicesEnv = tracing.env;
  await ctx.store.restartServices(measurer.servicesEnv);
  const before = tracing.spans();
  for (const s of pair(true)) measured.push(await measurer.measure(s));
  // Exporters send in batches: give the last one time to arrive before counting.
  await new Promise((r) => setTimeout(r, 6000));
  const spans = tracing.spans() - before;
  return {
    measured,
    tracing,
    report: {
      spans,
      note:
        spans > 0
          ? `the collector (Zipkin, fed by the OTLP receiver in the bench process) received ${spans} spans during the traced scenarios.`
          : "the collector received **no spans**: the services do not export traces yet (issue 12), so the traced rows measure only the collector's idle cost. The hook is `bench/lib/tracing.ts`.",
    },
  };
}
