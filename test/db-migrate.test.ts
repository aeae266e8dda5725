import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { sql } from "drizzle-orm";
import postgres from "postgres";
import { describe, expect, inject, it } from "vitest";
import { openDatabase, queryRows } from "../src/db/client.ts";
import { onRealPostgres } from "./support/db.ts";

/**
 * Instances started together on one database (a scaled or rolling deploy) each apply the pending
 * migrations at start: one at a time, so that neither fails, and each applied once.
 */
describe.runIf(onRealPostgres())("two instances starting together on a new database", () => {
  it("both start, and each migration is applied once", async () => {
    const target = inject("testDatabase");
    if (target.kind !== "postgres") throw new Error("a PostgreSQL server is needed");
    const name = `tandao_migrate_${randomBytes(4).toString("hex")}`;
    const admin = postgres(target.serverUrl, { max: 1, onnotice: () => {} });
    await admin.unsafe(`create database "${name}"`);
    const url = new URL(target.serverUrl);
    url.pathname = `/${name}`;
    const one = await openDatabase({ databaseUrl: url.toString(), dataDir: "" });
    const two = await openDatabase({ databaseUrl: url.toString(), dataDir: "" });
    try {
      const outcomes = await Promise.allSettled([one.migrate(), two.migrate()]);
      expect(outcomes.map((o) => o.status)).toEqual(["fulfilled", "fulfilled"]);
      const [applied] = await queryRows<{ n: number }>(
        one.db,
        sql`select count(*)::int as n from drizzle.__drizzle_migrations`,
      );
      const files = readdirSync(new URL("../drizzle", import.meta.url)).filter((f) => f.endsWith(".sql"));
      expect(applied?.n).toBe(files.length);
    } finally {
      await one.close();
      await two.close();
      await admin.unsafe(`drop database if exists "${name}" with (force)`);
      await admin.end();
    }
  });
});
