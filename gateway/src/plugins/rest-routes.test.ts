import assert from "node:assert/strict";
import { test } from "node:test";
import Fastify from "fastify";
import type { Handlers } from "../context.ts";
import { loadSpec, routeSpecs } from "../spec.ts";
import { validatorCompiler } from "../validation.ts";
import { everyOperationRouted, restRoutes } from "./rest-routes.ts";

// The REST routes plugin on a bare Fastify with the real openapi.yaml: the gateway refuses to
// start when the spec and the handlers do not match one to one.

const spec = loadSpec();
const operationIds = routeSpecs(spec)
  .map((r) => r.operationId)
  // Served by swagger-ui (api-docs.ts), not by a REST handler.
  .filter((id) => id !== "getDocs");

/** A handler for each operation but `except`. */
function handlers(except?: string): Handlers {
  return Object.fromEntries(operationIds.filter((id) => id !== except).map((id) => [id, async () => ({ id })]));
}

/** Registers `given` as the gateway does, with a token check that lets everyone in. */
async function routed(given: Handlers): Promise<void> {
  const app = Fastify();
  try {
    // The REST API's validator, which knows the spec's x-message; ready() compiles every schema.
    app.setValidatorCompiler(validatorCompiler());
    app.get("/docs", async () => "");
    await app.register(restRoutes, { spec, handlers: given, authenticate: async () => {} });
    everyOperationRouted(app, spec);
    await app.ready();
  } finally {
    await app.close();
  }
}

test("a handler for every operation: the gateway starts", async () => {
  await routed(handlers());
});

test("an operation without a handler stops the gateway, naming it", async () => {
  await assert.rejects(routed(handlers("getProduct")), /openapi\.yaml operations without a handler: getProduct$/);
});

test("a handler without an operation stops the gateway, naming it", async () => {
  await assert.rejects(
    routed({ ...handlers(), getProdcut: async () => ({}) }),
    /handler getProdcut has no openapi\.yaml operation/,
  );
});

test("a route that needs a token is not served without a token check", async () => {
  const app = Fastify();
  try {
    await assert.rejects(async () => {
      await app.register(restRoutes, { spec, handlers: { placeOrder: async () => ({}) } });
    }, /placeOrder needs a token, and nothing checks it/);
  } finally {
    await app.close();
  }
});
