// log-service's public face, for the workspaces above it (devstack, scripts, tests): how it is
// configured and where its file sink writes. The service itself is reached over RPC only.
export { type LogServiceConfig, loadConfig } from "./config.ts";
export { CHANNEL_FILE } from "./file-writer.ts";
