import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { reasonName, reasonOf, violationsOf } from "@merch/kit";

/** Awaits a call that must fail with this code and reason; returns the error for more checks. */
export async function rejectsWith(call: Promise<unknown>, code: Code, reason: string): Promise<ConnectError> {
  try {
    await call;
  } catch (err) {
    assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
    assert.equal(Code[err.code], Code[code], `code of: ${err.message}`);
    const actual = reasonOf(err);
    assert.equal(actual === undefined ? undefined : reasonName(actual), reason, `reason of: ${err.message}`);
    return err;
  }
  assert.fail(`expected ${Code[code]} ${reason}, but the call succeeded`);
}

/** Awaits a call that must fail with INVALID_ARGUMENT naming exactly these fields. */
export async function rejectsFields(call: Promise<unknown>, fields: string[]): Promise<void> {
  const err = await rejectsWith(call, Code.InvalidArgument, "validation_failed");
  assert.deepEqual(
    violationsOf(err)
      .map((v) => v.field)
      .sort(),
    [...fields].sort(),
  );
}
