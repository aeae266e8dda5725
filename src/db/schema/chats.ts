import { sql } from "drizzle-orm";
import { index, integer, jsonb, pgTable, text, uniqueIndex } from "drizzle-orm/pg-core";
import { at, createdAt, id } from "./columns.ts";
import { customers } from "./customers.ts";

/** `telegram_admin`: the admin bot's chats (src/bots/admin), delivered by a worker of their own. */
export const chatChannels = ["telegram", "whatsapp", "whatsapp_cloud", "telegram_admin"] as const;
export type ChatChannel = (typeof chatChannels)[number];

/** One chat identity per channel is linked to at most one customer (a customer may have several). */
export const chatLinks = pgTable(
  "chat_links",
  {
    id: id(),
    channel: text("channel", { enum: chatChannels }).notNull(),
    /** Telegram user id, WhatsApp phone (E.164) or Cloud API business-scoped user id. */
    chatId: text("chat_id").notNull(),
    customerId: integer("customer_id")
      .notNull()
      .references(() => customers.id),
    /** How it was linked: `contact` (shared own contact), `otp` (account + SMS code), `phone` (WhatsApp). */
    method: text("method").notNull(),
    linkedAt: createdAt(),
  },
  (t) => [uniqueIndex("chat_links_identity_uq").on(t.channel, t.chatId)],
);

/** Where a chat is in the menu: its inputs since the last home, kept in PostgreSQL, not in memory. */
export const chatSessions = pgTable(
  "chat_sessions",
  {
    id: id(),
    channel: text("channel", { enum: chatChannels }).notNull(),
    chatId: text("chat_id").notNull(),
    /** A new id each time the chat returns home or expires: menu steps are keyed by it. */
    sessionKey: text("session_key").notNull(),
    inputs: jsonb("inputs").$type<string[]>().notNull().default(sql`'[]'::jsonb`),
    language: text("language", { enum: ["en", "sw"] }),
    /** Increases with every input: a button from an older screen is stale. */
    step: integer("step").notNull().default(0),
    lastActivityAt: at("last_activity_at").notNull(),
    /**
     * When the person's newest message was sent, by the platform's own timestamp (never after it came
     * in): WhatsApp's 24-hour window runs from it, not from when the message was handled.
     */
    lastInboundAt: at("last_inbound_at"),
  },
  (t) => [uniqueIndex("chat_sessions_identity_uq").on(t.channel, t.chatId)],
);

/** A one-time code sent by SMS to link a chat to an account (expiry, attempt limit). */
export const chatLinkCodes = pgTable(
  "chat_link_codes",
  {
    id: id(),
    channel: text("channel", { enum: chatChannels }).notNull(),
    chatId: text("chat_id").notNull(),
    customerId: integer("customer_id")
      .notNull()
      .references(() => customers.id),
    /** SHA-256 of the code: the code itself is only in the SMS. */
    codeHash: text("code_hash").notNull(),
    attempts: integer("attempts").notNull().default(0),
    expiresAt: at("expires_at").notNull(),
    usedAt: at("used_at"),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex("chat_link_codes_identity_uq").on(t.channel, t.chatId)],
);

export const chatInboxStatuses = ["pending", "done", "failed"] as const;

/**
 * Every chat message or update a webhook delivered, stored before it is handled: the unique key
 * drops a redelivery, and one whose handling failed or was cut short (a crash, a restart) is handled
 * again by the retry job rather than lost after the platform was told 200.
 */
export const chatInbox = pgTable(
  "chat_inbox",
  {
    id: id(),
    channel: text("channel", { enum: chatChannels }).notNull(),
    /** The platform's id: Telegram's `update_id`, WhatsApp's message id (`wamid…`). */
    externalId: text("external_id").notNull(),
    chatId: text("chat_id").notNull(),
    /** What the adapter needs to handle it again: the Telegram update, or the parsed WhatsApp message. */
    payload: jsonb("payload").$type<Record<string, unknown>>().notNull(),
    status: text("status", { enum: chatInboxStatuses }).notNull().default("pending"),
    attempts: integer("attempts").notNull().default(0),
    /** While set in the future, one handler has it: the retry job leaves it alone. */
    leaseUntil: at("lease_until"),
    lastError: text("last_error"),
    receivedAt: at("received_at").notNull(),
    handledAt: at("handled_at"),
  },
  (t) => [
    uniqueIndex("chat_inbox_external_uq").on(t.channel, t.externalId),
    index("chat_inbox_open_idx").on(t.receivedAt).where(sql`${t.status} <> 'done'`),
  ],
);

/**
 * A phone that is talking to us in a chat: what its confirmed actions lead to (a receipt, a voucher
 * code, a failed payment) goes to that chat rather than by SMS while `until` lasts. Written by the
 * chat menu when a chat confirms an action; read by the outbox's routing trigger (migration 0013).
 */
export const chatReplyRoutes = pgTable("chat_reply_routes", {
  /** E.164, as in `message_outbox.recipient` of an SMS. */
  phone: text("phone").primaryKey(),
  channel: text("channel", { enum: chatChannels }).notNull(),
  chatId: text("chat_id").notNull(),
  until: at("until").notNull(),
});

/**
 * A WhatsApp Cloud API sender's business-scoped user id (BSUID) beside their number, learnt from a
 * message that carried both: a later message that names its sender by BSUID alone (a user with a
 * username) is the same chat, keyed by the number, so the person keeps their link and menu.
 */
export const whatsappUserIds = pgTable(
  "whatsapp_user_ids",
  {
    id: id(),
    userId: text("user_id").notNull(),
    /** The number without `+`, as the chat id of the Cloud API channel. */
    waId: text("wa_id").notNull(),
    /** When this pair was learnt (a number given up and taken by the same user is learnt again). */
    learntAt: at("learnt_at").notNull(),
  },
  (t) => [uniqueIndex("whatsapp_user_ids_user_uq").on(t.userId)],
);
