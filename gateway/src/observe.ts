import { Gauge, Histogram, SECONDS_BUCKETS, ServiceMetrics } from "@merch/kit";
import type { EventLogStats } from "./event-log.ts";

/** The gateway's metrics: HTTP (REST and ShopService alike), its log pipeline, its product cache. */
export class GatewayMetrics extends ServiceMetrics {
  readonly httpDuration = new Histogram({
    name: "http_server_request_duration_seconds",
    help: "Duration of HTTP requests answered, by method, route and status code.",
    labelNames: ["http_request_method", "http_route", "http_response_status_code"],
    buckets: SECONDS_BUCKETS,
    registers: [this.registry],
  });
  readonly httpActive = new Gauge({
    name: "http_server_active_requests",
    help: "HTTP requests being answered right now.",
    registers: [this.registry],
  });

  constructor(events: () => EventLogStats, following: () => boolean, dbCallsWaiting: () => number) {
    super("gateway");
    this.gauge("log_queue_queued", "Log events waiting to be sent to log-service.", () => events().queued);
    this.gauge(
      "log_queue_in_flight",
      "Log events sent to log-service, not yet acknowledged.",
      () => events().in_flight,
    );
    this.counter("log_queue_delivered_total", "Log events log-service acknowledged.", () => events().delivered);
    this.counter(
      "log_queue_dropped_total",
      "Log events that did not fit the buffer while log-service was away.",
      () => events().dropped,
    );
    this.gauge(
      "product_cache_following",
      "1 while product pages follow db-service's changes; 0 while they age up to the TTL.",
      () => (following() ? 1 : 0),
    );
    this.gauge(
      "db_calls_waiting",
      "Calls to db-service waiting for one of the streams db-service allows at once.",
      dbCallsWaiting,
    );
  }
}
