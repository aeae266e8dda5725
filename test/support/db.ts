import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import postgres from "postgres";
import { inject } from "vitest";
import { type Database, openDatabase } from "../../src/db/client.ts";

/**
 * A fresh, migrated database of its own for one test file (or one test), cloned from the run's
 * template: PGlite in memory by default, a new database on the server under TEST_DATABASE_URL.
 * Close it in afterAll: an open PGlite keeps the worker alive.
 */
export type TestDatabase = Database & {
  /** Connection URL of this test database (PostgreSQL only), for a second, independent client. */
  url?: string;
};

export async function createTestDatabase(options: { maxConnections?: number } = {}): Promise<TestDatabase> {
  const target = inject("testDatabase");
  if (target.kind === "embedded") {
    const template = new Blob([readFileSync(target.templatePath)]);
    return openDatabase({ dataDir: ":memory:", embeddedTemplate: template });
  }
  const name = `tandao_t_${process.ppid}_${randomBytes(4).toString("hex")}`;
  const admin = postgres(target.serverUrl, { max: 1, onnotice: () => {} });
  try {
    // CREATE DATABASE ... TEMPLATE fails while another session is connected to the template.
    for (let attempt = 0; ; attempt++) {
      try {
        await admin.unsafe(`create database "${name}" template "${target.templateName}"`);
        break;
      } catch (error) {
        if (attempt > 50) throw error;
        await new Promise((r) => setTimeout(r, 50 + Math.random() * 100));
      }
    }
  } finally {
    await admin.end();
  }
  const url = new URL(target.serverUrl);
  url.pathname = `/${name}`;
  const database = await openDatabase({
    databaseUrl: url.toString(),
    dataDir: "",
    maxConnections: options.maxConnections,
  });
  const close = database.close;
  return {
    ...database,
    url: url.toString(),
    close: async () => {
      await close();
      const dropper = postgres(target.serverUrl, { max: 1, onnotice: () => {} });
      await dropper.unsafe(`drop database if exists "${name}" with (force)`);
      await dropper.end();
    },
  };
}

/** True when the tests run against a real PostgreSQL server (races can only be shown there). */
export function onRealPostgres(): boolean {
  return inject("testDatabase").kind === "postgres";
}
