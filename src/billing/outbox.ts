import type { Executor } from "../db/client.ts";
import {
  type Language,
  type MessageChannel,
  messageOutbox,
  type ProvisioningAction,
  provisioningOutbox,
} from "../db/schema/index.ts";

/**
 * Side effects are rows written in the caller's transaction; workers deliver them later.
 * Nothing here talks to a router, an SMS gateway or a chat API.
 */
export async function enqueueProvisioning(
  tx: Executor,
  now: Date,
  row: {
    action: ProvisioningAction;
    routerId?: number | null;
    subscriptionId?: number | null;
    voucherId?: number | null;
    payload?: Record<string, unknown>;
  },
): Promise<void> {
  await tx.insert(provisioningOutbox).values({
    action: row.action,
    routerId: row.routerId ?? null,
    subscriptionId: row.subscriptionId ?? null,
    voucherId: row.voucherId ?? null,
    payload: row.payload ?? {},
    nextAttemptAt: now,
    createdAt: now,
  });
}

/** Message template names; the catalogs (src/messaging) render them in English and Kiswahili. */
export type MessageTemplate =
  | "payment_received"
  | "payment_received_plain"
  | "payment_failed"
  | "payment_failed_other"
  | "payment_not_credited"
  | "invoice_reminder"
  | "suspended"
  | "restored"
  | "activated"
  | "voucher_code"
  | "voucher_not_issued"
  | "plan_changed"
  | "plan_changed_credit"
  | "plan_change_scheduled"
  | "plan_change_next_payment"
  | "plan_change_dropped"
  | "welcome"
  | "chat_link_code"
  | "admin_alert"
  | "broadcast"
  | "signup_rejected";

export interface OutboundMessage {
  channel?: MessageChannel;
  recipient: string;
  language: Language;
  template: MessageTemplate;
  params: Record<string, string | number>;
  /** The same key is never sent twice: the unique index drops the repeat. */
  dedupeKey?: string;
}

export async function enqueueMessage(tx: Executor, now: Date, message: OutboundMessage): Promise<void> {
  await enqueueMessages(tx, now, [message]);
}

export async function enqueueMessages(tx: Executor, now: Date, messages: OutboundMessage[]): Promise<void> {
  if (messages.length === 0) return;
  await tx
    .insert(messageOutbox)
    .values(
      messages.map((message) => ({
        channel: message.channel ?? "sms",
        recipient: message.recipient,
        language: message.language,
        template: message.template,
        params: message.params,
        dedupeKey: message.dedupeKey ?? null,
        nextAttemptAt: now,
        createdAt: now,
      })),
    )
    .onConflictDoNothing();
}
