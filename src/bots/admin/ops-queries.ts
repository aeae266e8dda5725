import { type AnyColumn, and, desc, eq, inArray, isNull, or, sql } from "drizzle-orm";
import { audit } from "../../billing/audit.ts";
import type { Actor } from "../../billing/context.ts";
import type { Executor } from "../../db/client.ts";
import {
  auditLog,
  messageOutbox,
  paymentIntents,
  payments,
  provisioningOutbox,
  subscriptions,
} from "../../db/schema/index.ts";

/** What the admin chat's operations commands read, and `/retry`'s one write. */

/** Messages given up (any channel), newest first. */
export async function deadMessages(db: Executor, limit: number) {
  return db
    .select({
      id: messageOutbox.id,
      channel: messageOutbox.channel,
      recipient: messageOutbox.recipient,
      template: messageOutbox.template,
      params: messageOutbox.params,
      attempts: messageOutbox.attempts,
      lastError: messageOutbox.lastError,
      createdAt: messageOutbox.createdAt,
    })
    .from(messageOutbox)
    .where(eq(messageOutbox.status, "dead"))
    .orderBy(desc(messageOutbox.id))
    .limit(limit);
}

export type AuditEntryRow = typeof auditLog.$inferSelect;

/**
 * A customer's audit trail: entries about the customer, their subscriptions, payments and payment
 * intents, what they did themselves (by their phone) and the admin confirmations about them.
 */
export async function auditOfCustomer(
  db: Executor,
  customer: { id: number; phone: string },
  limit: number,
): Promise<AuditEntryRow[]> {
  const id = String(customer.id);
  const ids = (column: AnyColumn) => sql<string>`${column}::text`;
  return db
    .select()
    .from(auditLog)
    .where(
      or(
        and(eq(auditLog.entity, "customer"), eq(auditLog.entityId, id)),
        and(
          eq(auditLog.entity, "subscription"),
          inArray(
            auditLog.entityId,
            db
              .select({ id: ids(subscriptions.id) })
              .from(subscriptions)
              .where(eq(subscriptions.customerId, customer.id)),
          ),
        ),
        and(
          eq(auditLog.entity, "payment"),
          inArray(
            auditLog.entityId,
            db
              .select({ id: ids(payments.id) })
              .from(payments)
              .where(eq(payments.customerId, customer.id)),
          ),
        ),
        and(
          eq(auditLog.entity, "payment_intent"),
          inArray(
            auditLog.entityId,
            db
              .select({ id: ids(paymentIntents.id) })
              .from(paymentIntents)
              .where(eq(paymentIntents.customerId, customer.id)),
          ),
        ),
        and(eq(auditLog.entity, "admin_confirmation"), sql`${auditLog.details}->>'customerId' = ${id}`),
        and(eq(auditLog.actorKind, "subscriber"), eq(auditLog.actorId, customer.phone)),
      ),
    )
    .orderBy(desc(auditLog.at), desc(auditLog.id))
    .limit(limit);
}

/** What a Telegram user did in the admin chat (or tried), and what was done to them as an admin. */
export async function auditOfTelegramUser(db: Executor, telegramId: number, limit: number) {
  return db
    .select()
    .from(auditLog)
    .where(
      or(
        eq(auditLog.actorId, `tg:${telegramId}`),
        and(inArray(auditLog.entity, ["admin", "telegram_user"]), eq(auditLog.entityId, String(telegramId))),
      ),
    )
    .orderBy(desc(auditLog.at), desc(auditLog.id))
    .limit(limit);
}

/**
 * A router's given-up provisioning rows go back to the queue, due now, with their attempts reset
 * (the worker then reads the desired state afresh, as for any row), and so do those for any router
 * (a voucher sold without one: its hotspot user goes to every router, this one too). Audited; runs
 * in `tx`.
 */
export async function retryDeadProvisioningInTx(
  tx: Executor,
  now: Date,
  actor: Actor,
  router: { id: number; name: string },
): Promise<number> {
  const rows = await tx
    .update(provisioningOutbox)
    .set({ status: "pending", attempts: 0, nextAttemptAt: now, claimedUntil: null, doneAt: null })
    .where(
      and(
        or(eq(provisioningOutbox.routerId, router.id), isNull(provisioningOutbox.routerId)),
        eq(provisioningOutbox.status, "dead"),
      ),
    )
    .returning({ id: provisioningOutbox.id });
  await audit(tx, actor, now, {
    action: "provisioning.retried",
    entity: "router",
    entityId: router.id,
    details: { router: router.name, count: rows.length, ids: rows.slice(0, 100).map((r) => r.id) },
  });
  return rows.length;
}

export type ResendOutcome =
  | { kind: "queued"; id: number; channel: string; recipient: string; template: string }
  | { kind: "not_found" }
  | { kind: "not_given_up"; status: string }
  /** Only a voucher code goes to another number: a router login or a link code is the customer's own. */
  | { kind: "not_redirectable"; template: string };

/** What may be sent to a number other than the one it was for. */
const REDIRECTABLE = new Set(["voucher_code"]);

/**
 * A message given up, sent again (`/resend`): as it was, back in the queue with its tries reset;
 * or, for a voucher code, given a phone, as an SMS of its own to that number (a buyer whose own
 * number refuses the sender's messages, say), the given-up one kept as it is. Audited either way.
 */
export async function resendDeadMessageInTx(
  tx: Executor,
  now: Date,
  actor: Actor,
  id: number,
  phone?: string,
): Promise<ResendOutcome> {
  const [row] = await tx.select().from(messageOutbox).where(eq(messageOutbox.id, id)).for("update");
  if (!row) return { kind: "not_found" };
  if (row.status !== "dead") return { kind: "not_given_up", status: row.status };
  if (phone && !REDIRECTABLE.has(row.template)) return { kind: "not_redirectable", template: row.template };
  let queued: { id: number; channel: string; recipient: string; template: string };
  if (phone) {
    const [copy] = await tx
      .insert(messageOutbox)
      .values({
        channel: "sms",
        recipient: phone,
        language: row.language,
        template: row.template,
        params: row.params,
        nextAttemptAt: now,
        createdAt: now,
      })
      .returning();
    queued = copy!;
  } else {
    const [again] = await tx
      .update(messageOutbox)
      // Queued anew: how long it may wait for its channel (chat-delivery.ts) or an SMS gateway
      // (sms-worker.ts) counts from now, not from when it was first written.
      .set({ status: "pending", attempts: 0, nextAttemptAt: now, lastError: null, createdAt: now })
      .where(eq(messageOutbox.id, row.id))
      .returning();
    queued = again!;
  }
  await audit(tx, actor, now, {
    action: "message.resent",
    entity: "message",
    entityId: row.id,
    details: { template: row.template, to: queued.recipient, channel: queued.channel, queuedId: queued.id },
  });
  return { kind: "queued", ...queued };
}
