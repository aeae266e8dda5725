import { sql } from "drizzle-orm";
import { bigint, index, jsonb, pgTable, text, uniqueIndex } from "drizzle-orm/pg-core";
import { at, createdAt, id } from "./columns.ts";

/**
 * Who may run the ISP from the admin Telegram chat (src/bots/admin). owner: everything, including
 * adding and removing admins; admin: every operation; support: read, resume, record a payment;
 * viewer: read only. The first owner comes from configuration (`TELEGRAM_OWNER_ID`).
 */
export const adminRoles = ["owner", "admin", "support", "viewer"] as const;
export type AdminRole = (typeof adminRoles)[number];

export const admins = pgTable(
  "admins",
  {
    id: id(),
    /** The Telegram user id (a number up to 52 bits). */
    telegramId: bigint("telegram_id", { mode: "number" }).notNull(),
    role: text("role", { enum: adminRoles }).notNull(),
    name: text("name").notNull().default(""),
    /** The Telegram id of the owner who added this admin; null when it came from configuration. */
    addedBy: bigint("added_by", { mode: "number" }),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex("admins_telegram_id_uq").on(t.telegramId)],
);

/**
 * A destructive admin action waiting for its confirmation button: the button carries `token`, and
 * only the admin who asked may press it, once, before `expiresAt` (the claim sets `usedAt` in SQL).
 */
export const adminConfirmations = pgTable(
  "admin_confirmations",
  {
    id: id(),
    token: text("token").notNull(),
    adminTelegramId: bigint("admin_telegram_id", { mode: "number" }).notNull(),
    /** The chat the question was asked in. */
    chatId: text("chat_id").notNull(),
    /** What a press does, e.g. `{"kind":"pay","customerId":4,"amountCents":150000}`. */
    action: jsonb("action").$type<Record<string, unknown>>().notNull(),
    createdAt: at("created_at").notNull(),
    expiresAt: at("expires_at").notNull(),
    usedAt: at("used_at"),
    /** `done` or `cancelled`, once used. */
    outcome: text("outcome"),
  },
  (t) => [
    uniqueIndex("admin_confirmations_token_uq").on(t.token),
    index("admin_confirmations_open_idx").on(t.expiresAt).where(sql`${t.usedAt} is null`),
  ],
);
