import { bigint, jsonb, pgTable, primaryKey, text } from "drizzle-orm/pg-core";
import { at } from "./columns.ts";

/**
 * A guided admin command under way (`/add`): one question per message, the answers so far kept
 * here rather than in memory, so any instance can take the next answer. One per admin and chat;
 * a dialog past `expiresAt` is abandoned, as is one interrupted by another command.
 */
export const adminDialogs = pgTable(
  "admin_dialogs",
  {
    adminTelegramId: bigint("admin_telegram_id", { mode: "number" }).notNull(),
    chatId: text("chat_id").notNull(),
    /** Which dialog (`add`). */
    kind: text("kind").notNull(),
    /** The question waiting for its answer, e.g. `phone`. */
    step: text("step").notNull(),
    answers: jsonb("answers").$type<Record<string, unknown>>().notNull().default({}),
    updatedAt: at("updated_at").notNull(),
    expiresAt: at("expires_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.adminTelegramId, t.chatId] })],
);
