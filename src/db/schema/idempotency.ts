import { pgTable, text } from "drizzle-orm/pg-core";
import { at } from "./columns.ts";

/**
 * Keys of requests that must take effect once (a menu confirmation: `<session>#<step>`). A use-case
 * inserts its key first, in the same statement as its work, and does the work only when the insert
 * went in: a repeat, even one running at the same moment, waits for the first and then does nothing.
 * Kept two days, far longer than any gateway retries a request.
 */
export const idempotencyKeys = pgTable("idempotency_keys", {
  key: text("key").primaryKey(),
  createdAt: at("created_at").notNull(),
});
