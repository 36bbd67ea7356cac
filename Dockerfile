# syntax=docker/dockerfile:1
# The runbook worker (and CLI), compiled: a build stage with the dev dependencies runs
# `npm run build`; the image holds dist/, bin/ and the production dependencies only.
#   docker build -t durable-runbooks .
#   docker run --rm -e TEMPORAL_ADDRESS=... -e RUNBOOK_CONFIG=/etc/runbook/runbooks.yaml \
#     -v "$PWD:/etc/runbook:ro" durable-runbooks            # worker (default)
#   docker run --rm durable-runbooks check --help            # any other `runbook` command
FROM node:20.19.4-bookworm-slim AS build

ENV NPM_CONFIG_UPDATE_NOTIFIER=false \
  NPM_CONFIG_FUND=false

WORKDIR /app

COPY package.json package-lock.json ./
RUN npm ci --no-audit

COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY common ./common
COPY lib ./lib
COPY activities ./activities
COPY workflows ./workflows
COPY worker ./worker
COPY client ./client
COPY demo ./demo
RUN npm run build
# The workflow bundles the worker loads (worker/bundle-cache.ts); a read-only image cannot make them later.
RUN node dist/worker/bundle-main.js plain dist/workflow-bundle.plain.js \
 && node dist/worker/bundle-main.js encrypted dist/workflow-bundle.encrypted.js

FROM node:20.19.4-bookworm-slim

# postgresql-client for pg_dump/psql in the database runbooks. Debian bookworm ships client 15;
# pg_dump refuses servers of a newer major version, so for PostgreSQL 16+ install
# postgresql-client-NN from apt.postgresql.org instead.
RUN apt-get update \
  && apt-get install -y --no-install-recommends ca-certificates postgresql-client \
  && rm -rf /var/lib/apt/lists/*

ENV NODE_ENV=production \
  NPM_CONFIG_UPDATE_NOTIFIER=false \
  NPM_CONFIG_FUND=false

WORKDIR /app

# Dependencies first, so a source change does not reinstall them.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit && npm cache clean --force

# Files stay owned by root: the worker can read them, not change them.
COPY runbooks.example.yaml ./
COPY bin ./bin
COPY --from=build /app/dist ./dist

USER node

# Prometheus metrics of `runbook worker` (RUNBOOK_METRICS, default 0.0.0.0:9464).
EXPOSE 9464

ENTRYPOINT ["node", "bin/runbook.mjs"]
CMD ["worker"]
