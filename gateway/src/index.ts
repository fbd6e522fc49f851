// The gateway's public face, for the workspaces above it (devstack, tests): how it is configured,
// the OpenAPI document it serves and routes by, and what the storefront page is made of. The
// gateway itself is reached over HTTP only.
// The gateway's client of db-service, for the benchmark that picks its transport.
export { dbClients, networkDownstream } from "./clients.ts";
export { DB_TRANSPORTS, type GatewayConfig, loadConfig } from "./config.ts";
export { STOREFRONT_CSP, STOREFRONT_FILES } from "./plugins/storefront.ts";
export { dereference, loadSpec, type OpenApiDocument, SPEC_PATH } from "./spec.ts";
export { validatorCompiler } from "./validation.ts";
