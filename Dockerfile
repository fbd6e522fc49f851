# One Dockerfile for the three services; each is a build target:
#   docker build --target db-service -t sustech-merch/db-service .
#   docker build --target log-service -t sustech-merch/log-service .
#   docker build --target gateway -t sustech-merch/gateway .
# compose.yaml builds all three. Stages:
#   deps     production node_modules of every workspace, from package-lock.json
#   runtime  Node 24 slim, those node_modules, the shared workspaces (gen, kit, with the health check)
#   db-service, log-service, gateway
#            runtime plus that service's own sources, port, health check and command
#            (db-service's also holds db-init/migrations; compose's db-init job runs
#            db-service/src/migrate-main.ts in that image)
# The only build step strips the sources' types ahead of time (kit/src/js-build.ts writes
# <package>/build/*.js, lines and columns unchanged): each CMD runs those through
# kit/src/js-hooks.mjs, so no service keeps Node's type stripper resident (about 18 MB each).
# Anything not built (the health check, the migration job) runs its TypeScript as it is.
# .dockerignore lets in only what these COPY lines name, and no tests.

# The Node version the repository pins (the `node` devDependency); test/deploy checks they agree.
ARG NODE_VERSION=24.21.0

FROM node:${NODE_VERSION}-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY gen/package.json gen/
COPY kit/package.json kit/
COPY db-service/package.json db-service/
COPY log-service/package.json log-service/
COPY gateway/package.json gateway/
COPY devstack/package.json devstack/
COPY testkit/package.json testkit/
# --omit=dev leaves out the toolchain (and the `node` package); no production dependency needs an
# install script (@node-rs/argon2 ships prebuilt binaries as optional packages).
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:${NODE_VERSION}-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
# log-service keeps its spool here (DATA_DIR); compose mounts a volume on it.
RUN mkdir -p /data && chown node:node /data
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY gen/package.json gen/
COPY gen/src gen/src
COPY kit/package.json kit/
COPY kit/src kit/src
RUN node kit/src/js-build.ts
# Code and dependencies belong to root and are read-only to the service's user: each service's
# stage builds its own sources as root, then becomes that user.
STOPSIGNAL SIGTERM

# The health checks: healthcheck.ts gives up on a service that does not answer within 4 s itself;
# Docker's --timeout only has to let Node start and run it, which on a busy 2-core host took up to
# 1.3 s in the compose test, so it is generous (30 s) rather than a second, tighter deadline.

FROM runtime AS db-service
COPY db-service/package.json db-service/
COPY db-service/src db-service/src
COPY db-init/migrations db-init/migrations
RUN node kit/src/js-build.ts
USER node
# The same V8 heap limits as testkit/src/services.ts (SERVICE_NODE_FLAGS); bench/results.md says why.
ENV PORT=50051 NODE_OPTIONS="--max-semi-space-size=4 --max-old-space-size=48"
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=30s --start-period=30s --retries=3 \
  CMD ["node", "/app/kit/src/healthcheck.ts", "grpc"]
CMD ["node", "--import", "./kit/src/js-hooks.mjs", "db-service/src/server.ts"]

FROM runtime AS log-service
COPY log-service/package.json log-service/
COPY log-service/src log-service/src
RUN node kit/src/js-build.ts
USER node
ENV PORT=50052 DATA_DIR=/data NODE_OPTIONS="--max-semi-space-size=4 --max-old-space-size=56"
EXPOSE 50052
HEALTHCHECK --interval=10s --timeout=30s --start-period=30s --retries=3 \
  CMD ["node", "/app/kit/src/healthcheck.ts", "grpc"]
CMD ["node", "--import", "./kit/src/js-hooks.mjs", "log-service/src/server.ts"]

FROM runtime AS gateway
COPY gateway/package.json gateway/openapi.yaml gateway/
COPY gateway/src gateway/src
# The storefront page at /shop/ (src/plugins/storefront.ts reads these at start-up): the committed bundle,
# not its TypeScript sources.
COPY gateway/storefront/index.html gateway/storefront/shop.css gateway/storefront/
COPY gateway/storefront/dist gateway/storefront/dist
RUN node kit/src/js-build.ts
USER node
ENV PORT=8080 NODE_OPTIONS="--max-semi-space-size=2 --max-old-space-size=128"
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=30s --start-period=30s --retries=3 \
  CMD ["node", "/app/kit/src/healthcheck.ts", "/healthz"]
CMD ["node", "--import", "./kit/src/js-hooks.mjs", "gateway/src/server.ts"]
