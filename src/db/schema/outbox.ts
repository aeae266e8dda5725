import { sql } from "drizzle-orm";
import { index, integer, jsonb, pgTable, text, uniqueIndex } from "drizzle-orm/pg-core";
import { at, id } from "./columns.ts";
import { routers } from "./routers.ts";
import { subscriptions } from "./subscriptions.ts";
import { vouchers } from "./vouchers.ts";

export const outboxStatuses = ["pending", "done", "dead", "superseded"] as const;

/**
 * What the network must do. A row names the intent; the worker reads the desired state from the
 * database when it delivers, so a later row for the same target supersedes an earlier one.
 */
export const provisioningActions = [
  "ensure_account",
  "suspend",
  "restore",
  "change_plan",
  "remove_account",
  "ensure_voucher",
  "remove_voucher",
  "ensure_profile",
] as const;
export type ProvisioningAction = (typeof provisioningActions)[number];

export const provisioningOutbox = pgTable(
  "provisioning_outbox",
  {
    id: id(),
    routerId: integer("router_id").references(() => routers.id),
    subscriptionId: integer("subscription_id").references(() => subscriptions.id),
    voucherId: integer("voucher_id").references(() => vouchers.id),
    action: text("action", { enum: provisioningActions }).notNull(),
    payload: jsonb("payload").$type<Record<string, unknown>>().notNull().default({}),
    status: text("status", { enum: outboxStatuses }).notNull().default("pending"),
    attempts: integer("attempts").notNull().default(0),
    nextAttemptAt: at("next_attempt_at").notNull(),
    lastError: text("last_error"),
    /** Lease of the worker delivering the row: while it lasts no other worker touches the same target. */
    claimedUntil: at("claimed_until"),
    createdAt: at("created_at").notNull(),
    doneAt: at("done_at"),
  },
  (t) => [
    index("provisioning_outbox_due_idx").on(t.nextAttemptAt).where(sql`${t.status} = 'pending'`),
    index("provisioning_outbox_router_idx").on(t.routerId, t.status),
  ],
);

export const messageChannels = ["sms", "whatsapp", "telegram", "whatsapp_cloud", "telegram_admin"] as const;
export type MessageChannel = (typeof messageChannels)[number];

/**
 * Outbound messages: SMS and chat. A notice is rendered from `template` + `params` in the
 * recipient's language at delivery; a chat's menu answer is ready-made in `content`.
 */
export const messageOutbox = pgTable(
  "message_outbox",
  {
    id: id(),
    channel: text("channel", { enum: messageChannels }).notNull(),
    recipient: text("recipient").notNull(),
    language: text("language", { enum: ["en", "sw"] })
      .notNull()
      .default("en"),
    template: text("template").notNull(),
    params: jsonb("params").$type<Record<string, string | number>>().notNull().default({}),
    /** A chat message made ready by its channel (`ChatContent`, src/bots/chat-sender.ts). */
    content: jsonb("content").$type<Record<string, unknown>>(),
    /**
     * The customer's phone for a notice sent to a chat: a chat that cannot take it (blocked, outside
     * WhatsApp's window without a template, given up) turns the same row into an SMS to this number.
     */
    fallbackRecipient: text("fallback_recipient"),
    /** Set when the same message must never be sent twice (e.g. `dunning:42:remind:-3d`). */
    dedupeKey: text("dedupe_key"),
    status: text("status", { enum: outboxStatuses }).notNull().default("pending"),
    attempts: integer("attempts").notNull().default(0),
    nextAttemptAt: at("next_attempt_at").notNull(),
    lastError: text("last_error"),
    providerMessageId: text("provider_message_id"),
    createdAt: at("created_at").notNull(),
    sentAt: at("sent_at"),
  },
  (t) => [
    uniqueIndex("message_outbox_dedupe_uq").on(t.dedupeKey),
    index("message_outbox_due_idx").on(t.nextAttemptAt).where(sql`${t.status} = 'pending'`),
    // Messages to one chat go out in order: the workers look for an earlier pending one by recipient.
    index("message_outbox_recipient_pending_idx").on(t.recipient, t.id).where(sql`${t.status} = 'pending'`),
    // The admin alerts job looks for messages given up every minute, among every message ever sent,
    // by when they were given up (dead-message-alerts.ts).
    index("message_outbox_dead_idx").on(t.nextAttemptAt).where(sql`${t.status} = 'dead'`),
    // Meta reports a message it accepted as failed by its id, later (whatsapp-cloud/statuses.ts). Only
    // the Cloud API's rows: the index costs the other channels' sends nothing.
    index("message_outbox_cloud_message_idx")
      .on(t.providerMessageId)
      .where(sql`${t.channel} = 'whatsapp_cloud' and ${t.providerMessageId} is not null`),
  ],
);
