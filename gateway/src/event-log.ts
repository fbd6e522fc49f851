import { randomUUID } from "node:crypto";
import { setTimeout as wait } from "node:timers/promises";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import {
  type LogEvent,
  LogEventSchema,
  LogLevel,
  type LogService,
  type StreamLogsRequestSchema,
} from "@merch/gen/merch/log/v1/log_pb";
import type { Logger } from "@merch/kit";
import { activeIds, isSecretName, raceAbort } from "@merch/kit";

export type Level = "debug" | "info" | "warn" | "error";

export interface EventInput {
  level: Level;
  /** What happened, for example "order.placed". */
  event: string;
  message: string;
  userId?: number | undefined;
  requestId?: string | undefined;
  http?: { method: string; path: string; status: number; durationMs: number };
  /** Non-secret facts only; keys that look like secrets are dropped all the same. */
  attributes?: Record<string, string>;
}

export interface EventLogStats {
  queued: number;
  in_flight: number;
  delivered: number;
  dropped: number;
  connected: boolean;
}

const LEVELS: Record<Level, LogLevel> = {
  debug: LogLevel.DEBUG,
  info: LogLevel.INFO,
  warn: LogLevel.WARN,
  error: LogLevel.ERROR,
};
const BATCH = 500;

export interface EventLogOptions {
  /** Most events held in memory, queued plus sent-but-unacknowledged. */
  maxEvents: number;
  /** End the stream to collect an acknowledgement once this many events are unacknowledged... */
  ackEvery?: number;
  /** ...or once the oldest unacknowledged event is this old. */
  ackAfterMs?: number;
  /** A stream whose acknowledgement is this late is given up and its events sent again. */
  ackTimeoutMs?: number;
  /**
   * How long a few events wait for more to go out with them: one message of many events costs
   * log-service and Kafka far less CPU than many messages of one.
   */
  batchDelayMs?: number;
  maxBackoffMs?: number;
}

/** One stream's state: what it sent that log-service has not acknowledged yet. */
interface Flight {
  unacked: LogEvent[];
  oldestAt: number;
  signal: AbortSignal;
}

/**
 * Sends events to log-service over one client stream at a time, never making a request wait.
 *
 * log-service answers a stream with how many events it accepted (made durable) and rejected,
 * in order, so `accepted + rejected` events from the head of what was sent are done; the rest
 * go back to the front of the queue and are sent again. The stream stays open while traffic is
 * idle and is closed and reopened to collect acknowledgements, which bounds what must be kept
 * for resending. When log-service is unreachable, events wait (up to maxEvents) and the stream
 * reconnects with exponential backoff; what does not fit is counted as dropped and reported.
 * Consumers may see an event twice after a failure (never zero times); its id tells them.
 */
export class EventLog {
  readonly #client: Client<typeof LogService>;
  readonly #logger: Logger;
  readonly #max: number;
  readonly #ackEvery: number;
  readonly #ackAfterMs: number;
  readonly #ackTimeoutMs: number;
  readonly #batchDelayMs: number;
  readonly #maxBackoffMs: number;
  #queue: LogEvent[] = [];
  #flight: Flight | undefined;
  #delivered = 0;
  #dropped = 0;
  #connected = false;
  #closing = false;
  #wake: (() => void) | undefined;
  #lastDropWarning = 0;
  readonly #abort = new AbortController();
  readonly #running: Promise<void>;

  constructor(client: Client<typeof LogService>, logger: Logger, opts: EventLogOptions) {
    this.#client = client;
    this.#logger = logger;
    this.#max = opts.maxEvents;
    this.#ackEvery = opts.ackEvery ?? 2000;
    this.#ackAfterMs = opts.ackAfterMs ?? 2000;
    this.#ackTimeoutMs = opts.ackTimeoutMs ?? 10_000;
    this.#batchDelayMs = opts.batchDelayMs ?? 20;
    this.#maxBackoffMs = opts.maxBackoffMs ?? 5000;
    this.#running = this.#run();
  }

  /** Queues an event; returns at once and never throws. */
  emit(input: EventInput): void {
    if (this.#closing) return;
    if (this.#queue.length + (this.#flight?.unacked.length ?? 0) >= this.#max) {
      this.#dropped++;
      const now = Date.now();
      if (now - this.#lastDropWarning > 10_000) {
        this.#lastDropWarning = now;
        this.#logger.warn({ dropped: this.#dropped }, "log-service buffer full: dropping log events");
      }
      return;
    }
    // Most events (one per request) carry no attributes: nothing to filter then.
    const attributes = input.attributes
      ? Object.fromEntries(Object.entries(input.attributes).filter(([key]) => !isSecretName(key)))
      : {};
    const ids = activeIds();
    const init: MessageInitShape<typeof LogEventSchema> = {
      id: randomUUID(),
      time: timestampNow(),
      level: LEVELS[input.level],
      service: "gateway",
      event: input.event,
      message: input.message,
      requestId: input.requestId ?? "",
      attributes,
      ...(ids ? { traceId: ids.traceId, spanId: ids.spanId } : {}),
      ...(input.userId === undefined ? {} : { userId: input.userId }),
      ...(input.http ? { http: input.http } : {}),
    };
    this.#queue.push(create(LogEventSchema, init));
    this.#wakeUp();
  }

  stats(): EventLogStats {
    return {
      queued: this.#queue.length,
      in_flight: this.#flight?.unacked.length ?? 0,
      delivered: this.#delivered,
      dropped: this.#dropped,
      connected: this.#connected,
    };
  }

  /** Sends what is queued, for up to timeoutMs, then stops. */
  async close(timeoutMs: number): Promise<void> {
    this.#closing = true;
    this.#wakeUp();
    const timer = setTimeout(() => this.#abort.abort(), timeoutMs);
    await this.#running;
    clearTimeout(timer);
    const lost = this.#queue.length;
    if (lost > 0) this.#logger.warn({ lost }, "log events not delivered before shutdown");
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        if (this.#wake === done) this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener("abort", done, { once: true });
      this.#wake = done;
    });
  }

  async #run(): Promise<void> {
    let backoff = 100;
    while (!this.#abort.signal.aborted) {
      if (this.#queue.length === 0) {
        if (this.#closing) return;
        await this.#sleep(60_000, this.#abort.signal);
        continue;
      }
      const controller = new AbortController();
      const signal = AbortSignal.any([this.#abort.signal, controller.signal]);
      const flight: Flight = { unacked: [], oldestAt: 0, signal };
      this.#flight = flight;
      // A stream that stops answering (a peer that vanished without a reset) is given up on:
      // waiting on it would stop all logging.
      const watchdog = setInterval(() => {
        if (flight.unacked.length > 0 && Date.now() - flight.oldestAt > this.#ackAfterMs + this.#ackTimeoutMs) {
          controller.abort(new Error("log-service did not acknowledge in time"));
        }
      }, 1000);
      let res: Awaited<ReturnType<Client<typeof LogService>["streamLogs"]>> | undefined;
      let failure: unknown;
      try {
        res = await raceAbort(
          this.#client.streamLogs(this.#feed(flight), { signal }),
          signal,
          () => signal.reason ?? new Error("aborted"),
        );
      } catch (err) {
        failure = err;
      } finally {
        clearInterval(watchdog);
        // Before anything else: the feed must stop taking events from the queue at once. A feed
        // left running while we back off would move new events into this finished flight,
        // where nothing would ever send or requeue them. The feed checks the signal after
        // every wait, before it takes anything.
        controller.abort();
      }
      const unacked = flight.unacked;
      flight.unacked = [];
      this.#flight = undefined;
      if (res !== undefined) {
        const processed = Number(res.accepted + res.rejected);
        this.#delivered += Number(res.accepted);
        if (res.rejected > 0n) this.#logger.error({ rejections: res.rejections }, "log-service rejected log events");
        this.#requeue(unacked.slice(processed));
        backoff = 100;
        continue;
      }
      this.#connected = false;
      this.#requeue(unacked);
      if (this.#abort.signal.aborted) return;
      this.#logger.debug({ err: String(failure), retryInMs: Math.round(backoff) }, "log stream failed");
      await this.#sleep(this.#closing ? Math.min(backoff, 200) : backoff, this.#abort.signal);
      backoff = Math.min(backoff * 2, this.#maxBackoffMs) * (0.75 + Math.random() / 2);
    }
  }

  #requeue(events: LogEvent[]): void {
    if (events.length > 0) this.#queue = [...events, ...this.#queue];
  }

  async *#feed(flight: Flight): AsyncGenerator<MessageInitShape<typeof StreamLogsRequestSchema>> {
    this.#connected = true;
    // Checks after every wait: a stream given up on must not take events from the queue.
    while (!flight.signal.aborted) {
      const due =
        flight.unacked.length >= this.#ackEvery ||
        (flight.unacked.length > 0 && Date.now() - flight.oldestAt >= this.#ackAfterMs);
      if (due || (this.#closing && this.#queue.length === 0)) return;
      if (this.#queue.length === 0) {
        await this.#sleep(flight.unacked.length > 0 ? this.#ackAfterMs : 60_000, flight.signal);
        continue;
      }
      if (this.#queue.length < BATCH && !this.#closing && this.#batchDelayMs > 0) {
        await delay(this.#batchDelayMs, flight.signal);
        if (flight.signal.aborted) return;
      }
      const batch = this.#queue.splice(0, BATCH);
      if (flight.unacked.length === 0) flight.oldestAt = Date.now();
      flight.unacked.push(...batch);
      yield { events: batch };
    }
  }
}

/** Waits ms, or less when the signal aborts; unlike #sleep, new events do not cut it short. */
function delay(ms: number, signal: AbortSignal): Promise<void> {
  return wait(ms, undefined, { signal }).catch(() => {});
}
