import { and, eq, inArray } from "drizzle-orm";
import { auditMany } from "../../billing/audit.ts";
import { systemActor } from "../../billing/context.ts";
import type { Executor } from "../../db/client.ts";
import { admins, auditLog, messageOutbox } from "../../db/schema/index.ts";
import { chatOutboxRows } from "../chat-outbox.ts";
import { ADMIN_CHANNEL } from "./queued-api.ts";

/**
 * An alert for the admin chat is an outbox row on channel `telegram_admin` (sent by the admin chat
 * worker), for each configured admin chat, or for each owner's private chat when none is
 * configured. What was alerted is recorded in the audit log (action `admin.alerted`).
 */

export const ALERT_ACTION = "admin.alerted";
const alertActor = systemActor("admin-alerts");

export interface AdminAlertTarget {
  /** The configured admin chats (`TELEGRAM_ADMIN_CHATS`); none: every owner's private chat. */
  chatIds?: readonly number[];
}

/** Where alerts go: the configured admin chats, else the owners' private chats. */
export async function adminAlertRecipients(tx: Executor, chatIds?: readonly number[]): Promise<number[]> {
  if (chatIds?.length) return [...new Set(chatIds)];
  const owners = await tx
    .select({ id: admins.telegramId })
    .from(admins)
    .where(eq(admins.role, "owner"))
    .orderBy(admins.id);
  return owners.map((o) => Number(o.id));
}

/**
 * Queues `text` for the admin chat(s), in `tx` (with whatever the caller writes). With `key`, the
 * alert is queued at most once per chat, ever. Returns the number of messages queued.
 */
export function queueAdminAlert(
  tx: Executor,
  now: Date,
  text: string,
  options: AdminAlertTarget & { key?: string } = {},
): Promise<number> {
  return queueForAdmins(tx, now, options, (chat) => ({
    method: "sendMessage",
    payload: { chat_id: chat, text: text.slice(0, 4096) },
  }));
}

/**
 * Queues a picture (PNG bytes) for the admin chat(s), e.g. the WhatsApp Web login QR: uploaded as
 * a file by the Telegram sender (`$file`). With `key`, at most once per chat.
 */
export function queueAdminPhoto(
  tx: Executor,
  now: Date,
  photo: { png: Uint8Array; filename: string; caption: string },
  options: AdminAlertTarget & { key?: string } = {},
): Promise<number> {
  const base64 = Buffer.from(photo.png).toString("base64");
  return queueForAdmins(tx, now, options, (chat) => ({
    method: "sendPhoto",
    payload: {
      chat_id: chat,
      photo: { $file: { base64, filename: photo.filename } },
      caption: photo.caption.slice(0, 1024),
    },
  }));
}

async function queueForAdmins(
  tx: Executor,
  now: Date,
  options: AdminAlertTarget & { key?: string },
  call: (chat: number) => { method: string; payload: Record<string, unknown> },
): Promise<number> {
  const chats = await adminAlertRecipients(tx, options.chatIds);
  if (chats.length === 0) return 0;
  const rows = chatOutboxRows(
    now,
    chats.map((chat) => ({
      channel: ADMIN_CHANNEL,
      to: String(chat),
      language: "en" as const,
      content: { kind: "raw" as const, ...call(chat) },
    })),
  ).map((row, i) => ({ ...row, dedupeKey: options.key ? `admin-alert:${chats[i]}:${options.key}` : null }));
  const queued = await tx
    .insert(messageOutbox)
    .values(rows)
    .onConflictDoNothing()
    .returning({ id: messageOutbox.id });
  return queued.length;
}

/** Of `keys` (entity ids of `entity`), those already alerted. */
export async function alerted(tx: Executor, entity: string, keys: string[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  const rows = await tx
    .select({ key: auditLog.entityId })
    .from(auditLog)
    .where(
      and(eq(auditLog.entity, entity), inArray(auditLog.entityId, keys), eq(auditLog.action, ALERT_ACTION)),
    );
  return new Set(rows.map((r) => r.key));
}

export async function markAlerted(
  tx: Executor,
  now: Date,
  entity: string,
  items: { key: string; details: Record<string, unknown> }[],
): Promise<void> {
  await auditMany(
    tx,
    alertActor,
    now,
    items.map((item) => ({ action: ALERT_ACTION, entity, entityId: item.key, details: item.details })),
  );
}
