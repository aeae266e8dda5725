import { and, asc, eq, isNull, lte, sql } from "drizzle-orm";
import { customers, type IntentPurpose, paymentIntents } from "../../db/schema/index.ts";
import { audit } from "../audit.ts";
import type { Actor, BillingContext } from "../context.ts";
import { tellFailure } from "./common.ts";
import { walkInReference } from "./walk-in-reference.ts";
export interface IntentToSend {
  id: number;
  phone: string;
  amountCents: number;
  purpose: IntentPurpose;
  customerId: number | null;
  attempt: number;
  createdAt: Date;
  /** What the push shows as the account (≤ 12 characters), stored at the first claim. */
  accountReference: string;
  /** An earlier attempt may have reached M-Pesa, so the payer may have a prompt of this intent. */
  pushUncertain: boolean;
}

/**
 * The account reference of a push that names the push itself: a walk-in's (no customer), and any
 * voucher's, since a voucher is a sale, not money for an account (a paybill confirmation overtaking
 * the push's callback must sell the voucher, not credit the buyer's account). `TDW` is never the
 * start of an account number.
 */
export const walkInAccountReference = (intentId: number): string => `TDW${intentId}`;

/**
 * Claims up to `limit` pending, unsent intents whose turn has come, leasing each for `leaseMs`
 * (so a second dispatcher, or this one after a crash, does not send the same prompt meanwhile).
 * `skip locked` lets several dispatchers share the queue.
 *
 * Every attempt ends by recording either the checkout id (`markIntentSent`) or an error
 * (`markIntentSendFailed`), and the claim clears `last_error`: an intent claimed again with tries
 * behind it and no error recorded is one whose last attempt ended with its process (or its database
 * connection), perhaps after Daraja accepted the push. It is marked `push_uncertain`.
 */
export async function claimIntentsToSend(
  ctx: BillingContext,
  options: { limit?: number; leaseMs?: number; ids?: number[] } = {},
): Promise<IntentToSend[]> {
  const now = ctx.clock.now();
  // Longer than the slowest push (token and push requests, each with its own timeout, and a retry).
  const leaseUntil = new Date(now.getTime() + (options.leaseMs ?? 120_000));
  const i = paymentIntents;
  return ctx.db.transaction(async (tx) => {
    const due = await tx
      .select({ id: i.id })
      .from(i)
      .where(and(eq(i.status, "pending"), isNull(i.checkoutRequestId), lte(i.nextSendAt, now)))
      .orderBy(asc(i.nextSendAt))
      .limit(options.limit ?? 20)
      .for("update", { skipLocked: true });
    const claimed: IntentToSend[] = [];
    for (const { id } of due) {
      // Every expression reads the row as it was before this update.
      const [row] = await tx
        .update(i)
        .set({
          nextSendAt: leaseUntil,
          sendAttempts: sql`${i.sendAttempts} + 1`,
          pushUncertain: sql`${i.pushUncertain} or (${i.sendAttempts} > 0 and ${i.lastError} is null)`,
          lastError: null,
          // Kept from the first claim: every prompt of one intent shows the same reference, which is
          // also what a callback without a known checkout id is matched by. M-Pesa shows at most 12
          // characters: a longer account number (an imported one) cut short could be another
          // account's, which a paybill confirmation of this push would then credit, so such a push
          // shows its own name (`TDW<id>`), which a confirmation quoting it pays exactly.
          accountReference: sql`coalesce(${i.accountReference},
            (select ${customers.accountNumber} from ${customers}
              where ${customers.id} = ${i.customerId} and ${i.purpose} <> 'voucher'
                and length(${customers.accountNumber}) <= 12),
            ${walkInReference(id)})`,
          updatedAt: now,
        })
        .where(eq(i.id, id))
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
          accountReference: row.accountReference ?? walkInAccountReference(row.id),
          pushUncertain: row.pushUncertain,
        });
    }
    return claimed;
  });
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
 * The push attempt did not end with a checkout id. With `retryAt` another try is scheduled then;
 * without, the dispatcher gives up. `uncertain`: this attempt may have reached M-Pesa (its answer
 * was lost); the intent then stays marked `push_uncertain` whatever follows.
 *
 * Giving up on an intent whose every push was cleanly refused fails it and tells the payer by SMS.
 * Giving up on one that may have prompted the payer cannot say that: the money may still come. It
 * times out silently, and a success for it is still credited when it arrives.
 */
export async function markIntentSendFailed(
  ctx: BillingContext,
  actor: Actor,
  input: { intentId: number; error: string; retryAt: Date | null; uncertain?: boolean },
): Promise<"retrying" | "failed" | "timed_out" | "ignored"> {
  const uncertain = input.uncertain ?? false;
  const i = paymentIntents;
  const unsent = and(eq(i.id, input.intentId), eq(i.status, "pending"), isNull(i.checkoutRequestId));
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    if (input.retryAt) {
      const rows = await tx
        .update(i)
        .set({
          nextSendAt: input.retryAt,
          lastError: input.error,
          ...(uncertain ? { pushUncertain: true } : {}),
          updatedAt: now,
        })
        .where(unsent)
        .returning({ id: i.id });
      return rows.length ? "retrying" : "ignored";
    }
    const [current] = await tx.select({ pushUncertain: i.pushUncertain }).from(i).where(unsent).for("update");
    if (!current) return "ignored";
    if (current.pushUncertain || uncertain) {
      const [row] = await tx
        .update(i)
        .set({
          status: "timed_out",
          pushUncertain: true,
          nextSendAt: null,
          lastError: input.error,
          resultDesc: "M-Pesa did not confirm the prompt",
          settledAt: now,
          updatedAt: now,
        })
        .where(unsent)
        .returning({ id: i.id });
      if (!row) return "ignored";
      await audit(tx, actor, now, {
        action: "payment_intent.send_uncertain",
        entity: "payment_intent",
        entityId: row.id,
        reason: input.error,
      });
      return "timed_out";
    }
    const [row] = await tx
      .update(i)
      .set({
        status: "failed",
        nextSendAt: null,
        lastError: input.error,
        resultDesc: input.error,
        settledAt: now,
        updatedAt: now,
      })
      .where(unsent)
      .returning();
    if (!row) return "ignored";
    await audit(tx, actor, now, {
      action: "payment_intent.send_failed",
      entity: "payment_intent",
      entityId: row.id,
      reason: input.error,
    });
    await tellFailure(tx, now, row, "M-Pesa could not send the payment prompt", "unsent");
    return "failed";
  });
}
