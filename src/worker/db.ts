import { drizzle } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import type { Db } from "../db/client.ts";
import * as schema from "../db/schema/index.ts";

export interface WorkerDatabase {
  db: Db;
  close(): Promise<void>;
}

/**
 * The Worker's side of src/db/client.ts: postgres.js (its `workerd` build, over
 * `cloudflare:sockets`) on Hyperdrive's connection string, one client per request or cron run.
 * Hyperdrive keeps the pool, so a client here is cheap: a few connections, no type fetch on start.
 * Migrations are not run from the Worker: the Node service (`npm start`) or the CLI migrates.
 */
export function openWorkerDatabase(connectionString: string): WorkerDatabase {
  const client = postgres(connectionString, {
    // Hyperdrive's advice for postgres.js: a handful of connections, no type lookup on connect.
    max: 5,
    fetch_types: false,
    onnotice: () => {},
  });
  const db = drizzle(client, { schema }) as unknown as Db;
  return { db, close: () => client.end({ timeout: 5 }) };
}
