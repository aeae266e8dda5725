import { jsonb, pgTable, text } from "drizzle-orm/pg-core";
import { at } from "./columns.ts";

/** Per-session state of a channel conversation (USSD, WhatsApp, Telegram). */
export const channelSessions = pgTable("channel_sessions", {
  id: text("id").primaryKey(),
  channel: text("channel").notNull(),
  phone: text("phone").notNull(),
  language: text("language", { enum: ["en", "sw"] }),
  state: jsonb("state").$type<Record<string, unknown>>().notNull().default({}),
  updatedAt: at("updated_at").notNull(),
});
