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

/** A file for the admin chat: its bytes in base64 under `$file`, uploaded by the Telegram sender. */
export interface AdminFile {
  method: "sendPhoto" | "sendDocument";
  bytes: Uint8Array | string;
  filename: string;
  caption?: string;
}

function fileCall(chat: number, file: AdminFile) {
  const field = file.method === "sendPhoto" ? "photo" : "document";
  return {
    method: file.method,
    payload: {
      chat_id: chat,
      [field]: { $file: { base64: Buffer.from(file.bytes).toString("base64"), filename: file.filename } },
      ...(file.caption ? { caption: file.caption.slice(0, 1024) } : {}),
    },
  };
}

/** A file for one chat (a command's answer), queued in `tx` and sent by the admin chat worker. */
export async function queueAdminFile(
  tx: Executor,
  now: Date,
  chatId: number,
  file: AdminFile,
): Promise<void> {
  await tx.insert(messageOutbox).values(
    chatOutboxRows(now, [
      {
        channel: ADMIN_CHANNEL,
        to: String(chatId),
        language: "en",
        content: { kind: "raw", ...fileCall(chatId, file) },
      },
    ]),
  );
}

/**
 * Queues a picture (PNG bytes) for the admin chat(s), e.g. the WhatsApp Web login QR. With `key`,
 * at most once per chat.
 */
export function queueAdminPhoto(
  tx: Executor,
  now: Date,
  photo: { png: Uint8Array; filename: string; caption: string },
  options: AdminAlertTarget & { key?: string } = {},
): Promise<number> {
  return queueForAdmins(tx, now, options, (chat) =>
    fileCall(chat, {
      method: "sendPhoto",
      bytes: photo.png,
      filename: photo.filename,
      caption: photo.caption,
    }),
  );
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
