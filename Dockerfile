# syntax=docker/dockerfile:1
# Dependencies: installed from the lockfile with the project's patches applied (patch-package runs
# as npm's postinstall), then pruned to what production needs. No browser is downloaded
# (.puppeteerrc.cjs; playwright-core downloads none).
FROM node:22-bookworm-slim AS deps
WORKDIR /app
ENV PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
COPY package.json package-lock.json .puppeteerrc.cjs ./
COPY patches ./patches
# The postinstall step also makes the migrated copy a fresh embedded database starts from.
COPY drizzle ./drizzle
COPY src/db/embedded-template.ts ./src/db/embedded-template.ts
RUN npm ci --no-audit --no-fund && npm prune --omit=dev --no-audit --no-fund

FROM node:22-bookworm-slim AS app
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY bin ./bin
COPY drizzle ./drizzle
COPY src ./src
# A container is reached through its published port: listen on every interface. The embedded
# database (if DATABASE_URL is unset) and the sandbox's keys live in the /data volume.
ENV DATA_DIR=/data PORT=3000 HOST=0.0.0.0
RUN mkdir -p /data && chown node:node /data
VOLUME ["/data"]
USER node
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# node itself is PID 1 and gets SIGTERM from `docker stop` (exec form, no shell, no npx): the app
# stops its HTTP server and workers and exits. A young generation of 64 MB semi-spaces (V8's default
# is 16): a busy webhook allocates fast, and the smaller one spent ~15 % more CPU per chat update
# (B7) on garbage collection. The same flags as `npm start`.
CMD ["node", "--max-semi-space-size=64", "--import", "tsx", "src/main.ts"]

# With WhatsApp Web (WHATSAPP_WEB=on): Debian's Chromium, at the path the app expects.
FROM app AS app-whatsapp
USER root
RUN apt-get update && apt-get install -y --no-install-recommends chromium fonts-dejavu-core \
  && rm -rf /var/lib/apt/lists/*
USER node
ENV WHATSAPP_WEB_CHROMIUM=/usr/bin/chromium

# The image `docker build .` makes (the last stage): the one without a browser.
FROM app
