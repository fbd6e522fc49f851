import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { FastifyPluginAsync } from "fastify";
import type { OpenApiDocument } from "../spec.ts";

// The API reference at /docs (the spec's getDocs operation), rendered by swagger-ui from
// openapi.yaml as it is.

export interface ApiDocsOptions {
  spec: OpenApiDocument;
}

export const apiDocs: FastifyPluginAsync<ApiDocsOptions> = async (app, { spec }) => {
  await app.register(swagger, { mode: "static", specification: { document: spec as never } });
  // No staticCSP: swagger-ui's own policy has no 'unsafe-inline' for the <style> its script adds
  // (a CSP violation in every browser); the gateway's policy (security-headers.ts) allows it.
  await app.register(swaggerUi, { routePrefix: "/docs", uiConfig: { deepLinking: true } });
};
