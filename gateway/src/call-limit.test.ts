import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { ProductSchema, ProductService } from "@merch/gen/merch/store/v1/product_pb";
import { ErrorReason, reasonOf, retryAfterOf } from "@merch/kit";
import { limitCalls } from "./call-limit.ts";

// The limit in front of db-service: at most N calls in flight, the rest served in arrival order,
// and a call whose deadline passes while it waits is refused as retryable without being sent.

function gatedService() {
  let inFlight = 0;
  let most = 0;
  const started: number[] = [];
  const gates: (() => void)[] = [];
  const transport = createRouterTransport((router) => {
    router.service(ProductService, {
      async getProduct(req) {
        inFlight++;
        most = Math.max(most, inFlight);
        started.push(req.id);
        await new Promise<void>((resolve) => gates.push(resolve));
        inFlight--;
        return { product: create(ProductSchema, { id: req.id }) };
      },
    });
  });
  return { transport, gates, started, most: () => most };
}

async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!condition()) {
    assert.ok(Date.now() < deadline, "condition not met within 5 s");
    await new Promise((r) => setTimeout(r, 1));
  }
}

test("at most `limit` calls run at once; the others start in the order they came", async () => {
  const service = gatedService();
  const limit = limitCalls(service.transport, 2, 5000);
  const client = createClient(ProductService, limit);
  const calls = [1, 2, 3, 4, 5].map((id) => client.getProduct({ id }));
  await until(() => service.started.length === 2);
  assert.equal(limit.active(), 2);
  assert.equal(limit.waiting(), 3);
  while (service.gates.length > 0 || service.started.length < 5) {
    await until(() => service.gates.length > 0);
    service.gates.shift()?.();
  }
  const answers = await Promise.all(calls);
  assert.deepEqual(
    answers.map((a) => a.product?.id),
    [1, 2, 3, 4, 5],
  );
  assert.deepEqual(service.started, [1, 2, 3, 4, 5]);
  assert.equal(service.most(), 2);
  assert.equal(limit.active(), 0);
  assert.equal(limit.waiting(), 0);
});

test("a call whose deadline passes while it waits is refused as retryable, never sent, and frees no slot", async () => {
  const service = gatedService();
  const limit = limitCalls(service.transport, 1, 5000);
  const client = createClient(ProductService, limit);
  const first = client.getProduct({ id: 1 });
  await until(() => service.started.length === 1);
  const err = await client.getProduct({ id: 2 }, { timeoutMs: 50 }).then(
    () => assert.fail("the waiting call was answered"),
    (e: unknown) => ConnectError.from(e),
  );
  assert.equal(err.code, Code.Unavailable);
  assert.equal(reasonOf(err), ErrorReason.SERVICE_UNAVAILABLE);
  assert.equal(retryAfterOf(err), 1);
  assert.equal(limit.waiting(), 0);
  assert.equal(limit.active(), 1, "the first call still holds the only slot");
  // The next call waits for the first, then runs: the refused one left no hole in the count.
  const third = client.getProduct({ id: 3 });
  await until(() => limit.waiting() === 1);
  service.gates.shift()?.();
  await first;
  await until(() => service.gates.length === 1);
  service.gates.shift()?.();
  assert.equal((await third).product?.id, 3);
  assert.deepEqual(service.started, [1, 3]);
  assert.equal(limit.active(), 0);
});
