import assert from "node:assert/strict";
import { test } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { ExportTraceServiceResponseSchema } from "@merch/gen/opentelemetry/proto/collector/trace/v1/trace_service_pb";
import { readResponse } from "./span-export.ts";

// The exporter logs a collector's partial success from what readResponse gives it; the span
// export itself is proved against the real collector in devstack/src/span-export.test.ts.

test("a collector's partial success is read from its ExportTraceServiceResponse", () => {
  const bytes = toBinary(
    ExportTraceServiceResponseSchema,
    create(ExportTraceServiceResponseSchema, {
      partialSuccess: { rejectedSpans: 7n, errorMessage: "span too large" },
    }),
  );
  assert.deepEqual(readResponse(bytes), { partialSuccess: { rejectedSpans: "7", errorMessage: "span too large" } });
  // Full success: an empty response, nothing to log.
  assert.deepEqual(readResponse(new Uint8Array()), {});
});
