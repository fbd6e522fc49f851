import { Counter, Gauge, Histogram, SECONDS_BUCKETS, ServiceMetrics } from "@merch/kit";
import { argon2Load } from "./passwords.ts";

/** db-service's metrics: the RPCs (kit), the database, the write batches, passwords, throttling. */
export class DbMetrics extends ServiceMetrics {
  readonly operationDuration = new Histogram({
    name: "db_client_operation_duration_seconds",
    help: "Duration of database work by operation: a query, or a write's wait and commit in its batch.",
    labelNames: ["db_system_name", "db_operation_name"],
    buckets: SECONDS_BUCKETS,
    registers: [this.registry],
  });
  readonly connectionsUsed = new Gauge({
    name: "db_client_connections",
    help: "Database connections by state: used (running a query or a batch) and max (the pool's size).",
    labelNames: ["state"],
    registers: [this.registry],
  });
  readonly batchSize = new Histogram({
    name: "db_write_batch_size",
    help: "Writes committed together in one transaction (group commit).",
    buckets: [1, 2, 4, 8, 16, 32, 64],
    registers: [this.registry],
  });
  readonly throttled = new Counter({
    name: "login_throttle_refusals_total",
    help: "Logins and registrations refused by the throttle, by the limit that refused them.",
    labelNames: ["limit"],
    registers: [this.registry],
  });
  readonly databaseUp = new Gauge({
    name: "db_up",
    help: "1 while the database answers its health pings.",
    registers: [this.registry],
  });

  constructor(poolMax: number) {
    super("db-service");
    this.connectionsUsed.set({ state: "max" }, poolMax);
    this.connectionsUsed.set({ state: "used" }, 0);
    this.gauge("argon2_queue_length", "Password hashes waiting for a free core.", () => argon2Load().waiting);
    this.gauge("argon2_active", "Password hashes being computed.", () => argon2Load().active);
  }
}
