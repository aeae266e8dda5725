import { serve } from "@hono/node-server";
import { createApp } from "./app.ts";
import { isSandbox, loadConfig } from "./config.ts";
import { openDatabase } from "./db/client.ts";
import { createLogger } from "./logger.ts";

const config = loadConfig();
const logger = createLogger(config.LOG_LEVEL);

const database = await openDatabase({ databaseUrl: config.DATABASE_URL, dataDir: config.DATA_DIR });
await database.migrate();
logger.info({ database: database.kind, location: database.location }, `data lives in ${database.location}`);
if (isSandbox(config)) logger.info("sandbox mode: no outside credentials configured, using the built-in fakes");

const app = createApp({ db: database.db, logger });
const server = serve({ fetch: app.fetch, port: config.PORT }, (info) => {
  logger.info({ port: info.port }, `listening on http://127.0.0.1:${info.port}`);
});

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, "shutting down");
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await database.close();
  process.exit(0);
}
process.on("SIGINT", () => void shutdown("SIGINT"));
process.on("SIGTERM", () => void shutdown("SIGTERM"));
