import { pgTable, text, timestamp } from "drizzle-orm/pg-core";
import { at } from "./columns.ts";

/**
 * Sliding-window counters (e.g. STK prompts per phone): the instants of recent hits under one key.
 * An upsert that only adds a hit while fewer than the limit are recent makes the check and the
 * count one atomic statement.
 */
export const rateLimitWindows = pgTable("rate_limit_windows", {
  key: text("key").primaryKey(),
  hits: timestamp("hits", { withTimezone: true, mode: "date" }).array().notNull(),
  updatedAt: at("updated_at").notNull(),
});
