FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci --omit=dev --ignore-scripts && npx --yes patch-package
COPY . .
# A container is reached through its published port: listen on every interface.
ENV DATA_DIR=/data PORT=3000 HOST=0.0.0.0
VOLUME ["/data"]
EXPOSE 3000
# node itself is the process that gets the stop signal (npx would not pass it on).
CMD ["node", "--import", "tsx", "src/main.ts"]
