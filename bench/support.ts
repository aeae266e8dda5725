import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { type Database, openDatabase } from "../src/db/client.ts";
import { useSealingKey } from "../src/db/sealed.ts";
import { createSecretBox } from "../src/lib/secret-box.ts";

/** A fresh, migrated database on the benchmark server, dropped by `close()`. */
// PPPoE passwords are sealed at rest with a key, as the app does with SECRET_KEY.
useSealingKey(createSecretBox(randomBytes(32)));

export async function createBenchDatabase(serverUrl: string, maxConnections = 10): Promise<Database> {
  const name = `tandao_bench_${randomBytes(4).toString("hex")}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database "${name}"`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const database = await openDatabase({ databaseUrl: url.toString(), dataDir: "", maxConnections });
  await database.migrate();
  const close = database.close;
  return {
    ...database,
    close: async () => {
      await close();
      const dropper = postgres(serverUrl, { max: 1, onnotice: () => {} });
      await dropper.unsafe(`drop database if exists "${name}" with (force)`);
      await dropper.end();
    },
  };
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export function percentile(sortedMs: number[], p: number): number {
  if (sortedMs.length === 0) return 0;
  const index = Math.min(sortedMs.length - 1, Math.ceil((p / 100) * sortedMs.length) - 1);
  return sortedMs[Math.max(0, index)]!;
}
