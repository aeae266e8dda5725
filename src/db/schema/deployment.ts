import { sql } from "drizzle-orm";
import { check, integer, pgTable, text, timestamp } from "drizzle-orm/pg-core";

export const databaseModes = ["production", "sandbox"] as const;
export type DatabaseMode = (typeof databaseModes)[number];

/**
 * What a database serves, recorded by the first start on it (one row): a sandbox (fakes for every
 * outside service) must never start on a production ISP's data (src/db/mode-guard.ts).
 */
export const databaseMode = pgTable(
  "database_mode",
  {
    id: integer("id").primaryKey().default(1),
    mode: text("mode", { enum: databaseModes }).notNull(),
    since: timestamp("since", { withTimezone: true }).notNull(),
  },
  (t) => [check("database_mode_one_row", sql`${t.id} = 1`)],
);
