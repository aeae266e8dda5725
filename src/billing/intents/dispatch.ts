import { and, asc, eq, isNull, lte, sql } from "drizzle-orm";
import type { Executor } from "../../db/client.ts";
import { customers, type IntentPurpose, paymentIntents } from "../../db/schema/index.ts";
import { audit } from "../audit.ts";
import type { Actor, BillingContext } from "../context.ts";
import { enqueueMessage } from "../outbox.ts";
import { languageFor } from "./common.ts";
export interface IntentToSend {
  id: number;
  phone: string;
  amountCents: number;
  purpose: IntentPurpose;
  customerId: number | null;
  attempt: number;
  createdAt: Date;
}

/**
 * Claims up to `limit` pending, unsent intents whose turn has come, leasing each for `leaseMs`
 * (so a second dispatcher, or this one after a crash, does not send the same prompt meanwhile).
 * `skip locked` lets several dispatchers share the queue.
 */
export async function claimIntentsToSend(
  ctx: BillingContext,
  options: { limit?: number; leaseMs?: number; ids?: number[] } = {},
): Promise<IntentToSend[]> {
  const now = ctx.clock.now();
  // Longer than the slowest push (token and push requests, each with its own timeout, and a retry).
  const leaseUntil = new Date(now.getTime() + (options.leaseMs ?? 120_000));
  return ctx.db.transaction(async (tx) => {
    const due = await tx
      .select({ id: paymentIntents.id })
      .from(paymentIntents)
      .where(
        and(
          eq(paymentIntents.status, "pending"),
          isNull(paymentIntents.checkoutRequestId),
          lte(paymentIntents.nextSendAt, now),
        ),
      )
      .orderBy(asc(paymentIntents.nextSendAt))
      .limit(options.limit ?? 20)
      .for("update", { skipLocked: true });
    const claimed: IntentToSend[] = [];
    for (const { id } of due) {
      const [row] = await tx
        .update(paymentIntents)
        .set({
          nextSendAt: leaseUntil,
          sendAttempts: sql`${paymentIntents.sendAttempts} + 1`,
          updatedAt: now,
        })
        .where(eq(paymentIntents.id, id))
        .returning();
      if (row)
        claimed.push({
          id: row.id,
          phone: row.phone,
          amountCents: row.amountCents,
          purpose: row.purpose,
          customerId: row.customerId,
          attempt: row.sendAttempts,
          createdAt: row.createdAt,
        });
    }
    return claimed;
  });
}

/** Account reference shown on the customer's phone (≤ 12 characters): their account number if known. */
export async function intentAccountReference(db: Executor, intentId: number): Promise<string> {
  const [row] = await db
    .select({ account: customers.accountNumber })
    .from(paymentIntents)
    .leftJoin(customers, eq(customers.id, paymentIntents.customerId))
    .where(eq(paymentIntents.id, intentId));
  return (row?.account ?? `TD${intentId}`).slice(0, 12);
}

/** M-Pesa accepted the push: from now on the intent is identified by its CheckoutRequestID. */
export async function markIntentSent(
  ctx: BillingContext,
  input: { intentId: number; merchantRequestId: string; checkoutRequestId: string },
): Promise<void> {
  const now = ctx.clock.now();
  await ctx.db
    .update(paymentIntents)
    .set({
      merchantRequestId: input.merchantRequestId,
      checkoutRequestId: input.checkoutRequestId,
      sentAt: now,
      nextSendAt: null,
      lastError: null,
      updatedAt: now,
    })
    .where(and(eq(paymentIntents.id, input.intentId), isNull(paymentIntents.checkoutRequestId)));
}

/**
 * The push could not be sent. A transient error schedules another try at `retryAt`; otherwise (or
 * when `retryAt` is null) the intent fails and the payer gets a `payment_failed` SMS.
 */
export async function markIntentSendFailed(
  ctx: BillingContext,
  actor: Actor,
  input: { intentId: number; error: string; retryAt: Date | null },
): Promise<"retrying" | "failed" | "ignored"> {
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    if (input.retryAt) {
      const rows = await tx
        .update(paymentIntents)
        .set({ nextSendAt: input.retryAt, lastError: input.error, updatedAt: now })
        .where(
          and(
            eq(paymentIntents.id, input.intentId),
            eq(paymentIntents.status, "pending"),
            isNull(paymentIntents.checkoutRequestId),
          ),
        )
        .returning({ id: paymentIntents.id });
      return rows.length ? "retrying" : "ignored";
    }
    const [row] = await tx
      .update(paymentIntents)
      .set({
        status: "failed",
        nextSendAt: null,
        lastError: input.error,
        resultDesc: input.error,
        settledAt: now,
        updatedAt: now,
      })
      .where(
        and(
          eq(paymentIntents.id, input.intentId),
          eq(paymentIntents.status, "pending"),
          isNull(paymentIntents.checkoutRequestId),
        ),
      )
      .returning();
    if (!row) return "ignored";
    await audit(tx, actor, now, {
      action: "payment_intent.send_failed",
      entity: "payment_intent",
      entityId: row.id,
      reason: input.error,
    });
    await enqueueMessage(tx, now, {
      recipient: row.phone,
      language: await languageFor(tx, row.customerId),
      template: "payment_failed",
      params: { amountCents: row.amountCents, reason: "M-Pesa could not send the payment prompt" },
      dedupeKey: `intent:${row.id}:failed`,
    });
    return "failed";
  });
}
