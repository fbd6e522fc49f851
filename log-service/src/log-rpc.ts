import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type {
  LogEvent,
  LogService,
  RejectionSchema,
  StreamLogsRequest,
  StreamLogsResponseSchema,
} from "@merch/gen/merch/log/v1/log_pb";
import { ErrorReason, type FieldViolation, invalidArgument, isExporting, raceAbort, rpcError } from "@merch/kit";
import type { Cursor } from "./batch-queue.ts";
import type { Counters } from "./counters.ts";
import { encodeEvent, type OutRecord } from "./events.ts";
import type { Sink } from "./sink.ts";

/** Rejections a StreamLogs response lists; the count covers all of them. */
const MAX_REPORTED_REJECTIONS = 100;
/**
 * Bytes of one stream's records that may wait to become durable. Beyond it the stream is not
 * read, so HTTP/2 flow control slows the client down instead of log-service buffering without
 * bound.
 */
const STREAM_WINDOW_BYTES = 8 * 1024 * 1024;
/** Events per WriteLogs call. */
const MAX_WRITE_EVENTS = 1000;

type Rejection = MessageInitShape<typeof RejectionSchema>;
type StreamLogsResponse = MessageInitShape<typeof StreamLogsResponseSchema>;

/** One event of a request, in order: valid (and handed to the sink), or rejected. */
type Entry = "valid" | Rejection;

interface InFlight {
  entries: Entry[];
  bytes: number;
  durable: Promise<number>;
  settled: boolean;
}

const ABORTED = Symbol("aborted");
const SETTLED = Symbol("settled");

export function logRpc(sink: Sink, counters: Counters): ServiceImpl<typeof LogService> {
  return {
    /**
     * Events are handled strictly in the order received, so what the response counts
     * (accepted + rejected) is always the first events the client sent. The response comes when
     * the client half-closes, when log-service shuts down, or as soon as an event cannot be made
     * durable (Kafka down and spool full): then the events from accepted + rejected on were not
     * taken, and the client resends them on a new stream.
     */
    async streamLogs(requests, ctx) {
      const cursor: Cursor = { stopped: false };
      const tally = new StreamTally(counters);
      const inFlight: InFlight[] = [];
      let inFlightBytes = 0;
      const settleOldest = async () => {
        const oldest = inFlight.shift() as InFlight;
        tally.add(oldest.entries, await oldest.durable);
        inFlightBytes -= oldest.bytes;
      };

      const it = requests[Symbol.asyncIterator]();
      let reading: Promise<IteratorResult<StreamLogsRequest>> | undefined;
      for (;;) {
        reading ??= it.next();
        // Also woken when the oldest batch settles, so that an idle stream still learns at
        // once that nothing more can be accepted.
        const oldest = inFlight[0]?.durable.then((): typeof SETTLED => SETTLED);
        let next: IteratorResult<StreamLogsRequest> | typeof SETTLED;
        try {
          next = await raceAbort(oldest ? Promise.race([reading, oldest]) : reading, ctx.signal, () => ABORTED);
        } catch (err) {
          // Aborted (shutdown, client gone, deadline): answer with what was taken so far.
          if (err === ABORTED) break;
          throw err;
        }
        if (next !== SETTLED) {
          reading = undefined;
          if (next.done) break;
          const item = admit(next.value, sink, cursor);
          inFlight.push(item);
          inFlightBytes += item.bytes;
        }
        while (inFlight[0]?.settled || (inFlight.length > 0 && inFlightBytes > STREAM_WINDOW_BYTES)) {
          await settleOldest();
        }
        // Nothing more can be accepted on this stream: answer now, so the client resends soon.
        if (cursor.stopped) break;
      }
      while (inFlight.length > 0) await settleOldest();
      return tally.response();
    },

    async writeLogs(req) {
      if (req.events.length > MAX_WRITE_EVENTS) {
        counters.rejected += req.events.length;
        throw invalidArgument([{ field: "events", message: `must hold at most ${MAX_WRITE_EVENTS} events` }]);
      }
      const receivedAt = new Date();
      const records: OutRecord[] = [];
      const violations: FieldViolation[] = [];
      const tracing = isExporting();
      req.events.forEach((event, i) => {
        const encoded = encodeEvent(event, `events[${i}]`, receivedAt);
        if (encoded.ok) {
          if (tracing) linkToEvent(encoded.record, event);
          records.push(encoded.record);
        } else violations.push(...encoded.violations);
      });
      if (violations.length > 0) {
        counters.rejected += req.events.length;
        throw invalidArgument(violations);
      }
      const durable = await sink.submit(records, { stopped: false });
      if (durable < records.length) {
        throw rpcError(
          ErrorReason.LOG_BUFFER_FULL,
          `log-service cannot store events now (Kafka unreachable and spool full): ${durable} of ${records.length} were accepted; retry the call later`,
        );
      }
      return { accepted: BigInt(durable) };
    },
  };
}

/** Validates one request's events and hands the valid ones to the sink, keeping their order. */
function admit(req: StreamLogsRequest, sink: Sink, cursor: Cursor): InFlight {
  const receivedAt = new Date();
  const entries: Entry[] = [];
  const records: OutRecord[] = [];
  let bytes = 0;
  const tracing = isExporting();
  for (const event of req.events) {
    const encoded = encodeEvent(event, "", receivedAt);
    if (encoded.ok) {
      entries.push("valid");
      if (tracing) linkToEvent(encoded.record, event);
      records.push(encoded.record);
      bytes += encoded.record.bytes;
    } else {
      entries.push({ eventId: event.id, reason: encoded.violations.map((v) => `${v.field}: ${v.message}`).join("; ") });
    }
  }
  const item: InFlight = { entries, bytes, durable: sink.submit(records, cursor), settled: false };
  void item.durable.then(() => {
    item.settled = true;
  });
  return item;
}

/**
 * A traced event's record carries the ids of the span of the request that caused it: the span
 * that publishes its Kafka batch (sink.ts) links to each, one span per batch, not per event.
 */
function linkToEvent(record: OutRecord, event: LogEvent): void {
  if (event.traceId === "") return;
  record.traceId = event.traceId;
  record.spanId = event.spanId;
}

/** The counts of a stream's prefix: everything up to the first valid event that was not made durable. */
class StreamTally {
  readonly #counters: Counters;
  #accepted = 0;
  #rejected = 0;
  readonly #rejections: Rejection[] = [];
  #ended = false;

  constructor(counters: Counters) {
    this.#counters = counters;
  }

  /** Adds one request's entries, of whose valid events the first `durable` were made durable. */
  add(entries: readonly Entry[], durable: number): void {
    let valid = 0;
    for (const entry of entries) {
      if (this.#ended) return;
      if (entry === "valid") {
        if (valid === durable) {
          this.#ended = true;
          return;
        }
        valid++;
        this.#accepted++;
      } else {
        this.#rejected++;
        this.#counters.rejected++;
        if (this.#rejections.length < MAX_REPORTED_REJECTIONS) this.#rejections.push(entry);
      }
    }
  }

  response(): StreamLogsResponse {
    return { accepted: BigInt(this.#accepted), rejected: BigInt(this.#rejected), rejections: this.#rejections };
  }
}
