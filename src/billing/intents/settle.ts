import { and, eq, sql } from "drizzle-orm";
import type { Executor } from "../../db/client.ts";
import { type IntentStatus, paymentIntents, payments } from "../../db/schema/index.ts";
import { audit } from "../audit.ts";
import { type Actor, type BillingContext, BillingError } from "../context.ts";
import { formatKes } from "../money.ts";
import { applyPaymentInTx, recordUncreditedPaymentInTx } from "../payments.ts";
import { changePlanInTx } from "../plan-change.ts";
import { sellVoucherInTx } from "../vouchers.ts";
import { recordCallbackOutcome } from "./callbacks.ts";
import { type IntentRow, languageFor, tellFailure } from "./common.ts";
import { settleOrphanSuccess } from "./orphans.ts";

/**
 * How a push ended, in the core's words; the payment adapter translates the provider's result
 * codes into these (src/payments/mpesa/wire.ts).
 */
export type PushOutcome = "paid" | "cancelled" | "unanswered" | "declined";

/** The result of one STK push, as a callback or a status query reports it. */
export interface StkResult {
  checkoutRequestId: string;
  merchantRequestId?: string | null;
  outcome: PushOutcome;
  /** Why it was not paid, in words for the payer. */
  reason: string;
  /** The provider's own result code, kept on the intent for the record. */
  providerCode?: number | null;
  /** Callbacks carry the receipt, the amount paid and the payer; a status query carries none. */
  receipt?: string | null;
  amountCents?: number | null;
  /** The payer's phone, E.164. */
  phone?: string | null;
  source: "callback" | "query";
  /** The inbox row the request was stored in before processing (none for a status query). */
  inboxId?: number | null;
  /** The body as received (kept with the record of a status query's answer). */
  raw?: unknown;
}

export type SettleStatus =
  | "credited"
  | "duplicate"
  | "failed"
  | "late_failure"
  | "unknown_checkout"
  | "amount_mismatch"
  | "queued"
  | "malformed";

export interface SettleOutcome {
  status: SettleStatus;
  intentId: number | null;
  paymentId?: number;
  intentStatus?: IntentStatus;
}

const failedStatus: Record<Exclude<PushOutcome, "paid">, IntentStatus> = {
  cancelled: "cancelled",
  unanswered: "timed_out",
  declined: "failed",
};

/**
 * Settles an STK push in one transaction. The intent row is locked first (then the customer's
 * money: the order of money-lock.ts), so concurrent copies of one callback, or a callback racing
 * the status query, queue behind each other and the later ones see it settled; the payment's unique
 * (provider, receipt) key makes a paybill confirmation of the same receipt a duplicate too. A
 * success is credited whatever state the intent was in (money has moved), except when the amount
 * differs from what was asked: that payment waits in the unmatched queue for an admin. A success
 * for a checkout id we do not know is matched to its intent or queued (orphans.ts). Failures
 * credit nothing and tell the payer once.
 */
export async function settleStkResult(
  ctx: BillingContext,
  actor: Actor,
  result: StkResult,
): Promise<SettleOutcome> {
  return ctx.db.transaction((tx) => settleInTx(tx, ctx, actor, result, ctx.clock.now()));
}

export const callbackKind = (result: StkResult): "stk" | "stk_query" =>
  result.source === "query" ? "stk_query" : "stk";

export function callbackFlag(status: SettleStatus): string | null {
  switch (status) {
    case "credited":
    case "failed":
      return null;
    default:
      return status;
  }
}

/** Settles one result in the caller's transaction and records the outcome on its inbox row. */
export async function settleInTx(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  result: StkResult,
  now: Date,
): Promise<SettleOutcome> {
  const [intent] = await tx
    .select()
    .from(paymentIntents)
    .where(eq(paymentIntents.checkoutRequestId, result.checkoutRequestId))
    .for("update");
  let outcome: SettleOutcome;
  if (!intent) {
    outcome =
      result.outcome === "paid"
        ? await settleOrphanSuccess(tx, ctx, actor, result, now)
        : { status: "unknown_checkout", intentId: null };
  } else if (result.outcome !== "paid") {
    outcome = await settleFailure(tx, actor, intent, result, now);
  } else {
    outcome = await settlePaidIntent(tx, ctx, actor, intent, result, now);
  }
  await recordCallbackOutcome(tx, now, {
    inboxId: result.inboxId,
    kind: callbackKind(result),
    reference: result.checkoutRequestId,
    body: result.raw,
    flag: callbackFlag(outcome.status),
  });
  return outcome;
}

async function settleFailure(
  tx: Executor,
  actor: Actor,
  intent: IntentRow,
  result: StkResult,
  now: Date,
): Promise<SettleOutcome> {
  if (intent.status !== "pending")
    return { status: "late_failure", intentId: intent.id, intentStatus: intent.status };
  const status = failedStatus[result.outcome as Exclude<PushOutcome, "paid">];
  await tx
    .update(paymentIntents)
    .set({
      status,
      resultCode: result.providerCode ?? null,
      resultDesc: result.reason,
      settledAt: now,
      updatedAt: now,
    })
    .where(eq(paymentIntents.id, intent.id));
  // An earlier prompt of this intent may still be open (its push's answer was lost): the payer is
  // not told "failed" while it could still be paid.
  if (!intent.pushUncertain) await tellFailure(tx, now, intent, result.reason);
  await audit(tx, actor, now, {
    action: `payment_intent.${status}`,
    entity: "payment_intent",
    entityId: intent.id,
    details: { providerCode: result.providerCode ?? null, reason: result.reason, source: result.source },
  });
  return { status: "failed", intentId: intent.id, intentStatus: status };
}

/**
 * A success for this intent (found by its checkout id, or matched as an orphan). Once an intent is
 * paid, a later report of the same payment only completes its identity (the receipt a status
 * query could not give); a different receipt is a second payment, which is queued, never lost.
 */
export async function settlePaidIntent(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  intent: IntentRow,
  result: StkResult,
  now: Date,
): Promise<SettleOutcome> {
  const receipt = result.receipt ?? null;
  if (intent.paymentId !== null) return settleRepeat(tx, actor, intent, result, now);

  // A status query says "paid" without a receipt or an amount: the intent's amount was asked and
  // M-Pesa does not take partial payments, so that is what was paid.
  let amountCents = result.amountCents ?? null;
  if (result.source === "query") {
    amountCents = intent.amountCents;
  } else if (!receipt || amountCents === null || amountCents <= 0) {
    return { status: "malformed", intentId: intent.id };
  }
  // Until its receipt arrives, a payment is known by its checkout id; it adopts the receipt then.
  const providerRef = receipt ?? `stk:${result.checkoutRequestId}`;
  const paid = amountCents as number;

  if (paid !== intent.amountCents) {
    const paymentId = await recordUncreditedPaymentInTx(
      tx,
      now,
      {
        method: "mpesa_stk",
        provider: "mpesa",
        providerRef,
        amountCents: paid,
        phone: intent.phone,
        accountReference: `intent ${intent.id}`,
      },
      "unmatched",
      `paid ${formatKes(paid)} instead of the ${formatKes(intent.amountCents)} asked`,
    );
    await tx
      .update(paymentIntents)
      .set({
        status: "failed",
        resultCode: result.providerCode ?? null,
        resultDesc: `Paid ${formatKes(paid)} instead of ${formatKes(intent.amountCents)}: held for review`,
        mpesaReceipt: receipt,
        paymentId,
        settledAt: now,
        updatedAt: now,
      })
      .where(eq(paymentIntents.id, intent.id));
    await audit(tx, actor, now, {
      action: "payment_intent.amount_mismatch",
      entity: "payment_intent",
      entityId: intent.id,
      details: { paidCents: paid, askedCents: intent.amountCents, receipt },
    });
    return { status: "amount_mismatch", intentId: intent.id, paymentId: paymentId ?? undefined };
  }

  const credit = await creditIntent(tx, ctx, actor, intent, { providerRef, amountCents: paid, now });
  await tx.execute(sql`
    update payment_intents set status = 'succeeded', result_code = ${result.providerCode ?? null}::int,
      result_desc = ${result.reason}, mpesa_receipt = ${receipt}, payment_id = ${credit.paymentId},
      outcome = ${JSON.stringify(credit.outcome)}::jsonb,
      checkout_request_id = coalesce(checkout_request_id, ${result.checkoutRequestId}::text),
      settled_at = ${now.toISOString()}::timestamptz, updated_at = ${now.toISOString()}::timestamptz
    where id = ${intent.id}`);
  return {
    status: credit.duplicate ? "duplicate" : "credited",
    intentId: intent.id,
    paymentId: credit.paymentId ?? undefined,
    intentStatus: "succeeded",
  };
}

/** Another success report for an intent already paid. */
async function settleRepeat(
  tx: Executor,
  actor: Actor,
  intent: IntentRow,
  result: StkResult,
  now: Date,
): Promise<SettleOutcome> {
  const receipt = result.receipt ?? null;
  const duplicate: SettleOutcome = {
    status: "duplicate",
    intentId: intent.id,
    paymentId: intent.paymentId ?? undefined,
    intentStatus: intent.status,
  };
  if (!receipt || receipt === intent.mpesaReceipt) return duplicate;
  if (intent.mpesaReceipt === null) {
    await adoptReceipt(tx, intent, receipt, now);
    return duplicate;
  }
  // Two prompts for one intent were both paid (a retried push): the second is real money too.
  if (!result.amountCents || result.amountCents <= 0) return { status: "malformed", intentId: intent.id };
  const paymentId = await recordUncreditedPaymentInTx(
    tx,
    now,
    {
      method: "mpesa_stk",
      provider: "mpesa",
      providerRef: receipt,
      amountCents: result.amountCents,
      phone: result.phone ?? intent.phone,
      accountReference: `intent ${intent.id}`,
    },
    "unmatched",
    `a second payment for one request (intent ${intent.id} was already paid by ${intent.mpesaReceipt})`,
  );
  if (paymentId === null) return duplicate;
  await audit(tx, actor, now, {
    action: "payment.unmatched",
    entity: "payment",
    entityId: paymentId,
    details: { intentId: intent.id, receipt, amountCents: result.amountCents },
  });
  return { status: "queued", intentId: intent.id, paymentId, intentStatus: intent.status };
}

/**
 * A payment first known by its checkout id (settled by a status query, which has no receipt) takes
 * its receipt, so the same receipt arriving by any route later is a duplicate and never credited
 * again.
 */
export async function adoptReceipt(
  tx: Executor,
  intent: IntentRow,
  receipt: string,
  now: Date,
): Promise<void> {
  if (intent.paymentId !== null) {
    await tx.execute(sql`
      update payments set provider_ref = ${receipt}
      where id = ${intent.paymentId}::int and provider_ref like 'stk:%'
        and not exists (select 1 from payments p where p.provider = 'mpesa' and p.provider_ref = ${receipt})`);
  }
  await tx
    .update(paymentIntents)
    .set({ mpesaReceipt: receipt, updatedAt: now })
    .where(eq(paymentIntents.id, intent.id));
}

/** Credits the payment and carries out what it was for, once per intent. */
async function creditIntent(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  intent: IntentRow,
  payment: { providerRef: string; amountCents: number; now: Date },
): Promise<{ paymentId: number | null; duplicate: boolean; outcome: Record<string, unknown> }> {
  if (intent.purpose === "voucher" || intent.customerId === null) {
    // A voucher is a sale, not a credit to an account (a walk-in buyer has none): the payment is
    // recorded without a ledger entry. Anything else without an account waits for an admin.
    const paymentId = await recordUncreditedPaymentInTx(
      tx,
      payment.now,
      {
        method: "mpesa_stk",
        provider: "mpesa",
        providerRef: payment.providerRef,
        amountCents: payment.amountCents,
        phone: intent.phone,
        accountReference: intent.purpose === "voucher" ? `voucher ${intent.id}` : `intent ${intent.id}`,
      },
      intent.purpose === "voucher" ? "applied" : "unmatched",
    );
    if (paymentId !== null)
      return { paymentId, duplicate: false, outcome: await deliverSale(tx, ctx, actor, intent, paymentId) };
    // The same receipt came first as a paybill confirmation naming no account (the push's
    // reference): it is this sale, so it leaves the unmatched queue instead of being paid out twice.
    const [claimed] =
      intent.purpose === "voucher"
        ? await tx
            .update(payments)
            .set({ status: "applied", holdReason: null, accountReference: `voucher ${intent.id}` })
            .where(
              and(
                eq(payments.provider, "mpesa"),
                eq(payments.providerRef, payment.providerRef),
                eq(payments.status, "unmatched"),
                eq(payments.amountCents, payment.amountCents),
              ),
            )
            .returning({ id: payments.id })
        : [];
    if (claimed)
      return {
        paymentId: claimed.id,
        duplicate: true,
        outcome: await deliverSale(tx, ctx, actor, intent, claimed.id),
      };
    return { paymentId: null, duplicate: true, outcome: { followUpError: "receipt already recorded" } };
  }
  const applied = await applyPaymentInTx(tx, ctx, actor, {
    customerId: intent.customerId,
    method: "mpesa_stk",
    provider: "mpesa",
    providerRef: payment.providerRef,
    amountCents: payment.amountCents,
    phone: intent.phone,
    receivedAt: payment.now,
  });
  const outcome = await followUp(tx, ctx, actor, intent);
  if (applied.restoredSubscriptionIds.length)
    outcome.restoredSubscriptionIds = applied.restoredSubscriptionIds;
  return { paymentId: applied.paymentId, duplicate: applied.duplicate, outcome };
}

/**
 * A sale paid without an account (a voucher): when it cannot be delivered (the plan was retired
 * meanwhile, say), the payment is not marked done with nothing sold: it goes back to the admin's
 * queue with the reason, to be refunded or sold on another plan.
 */
async function deliverSale(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  intent: IntentRow,
  paymentId: number,
): Promise<Record<string, unknown>> {
  const outcome = await followUp(tx, ctx, actor, intent);
  if (intent.purpose === "voucher" && typeof outcome.followUpError === "string") {
    await tx
      .update(payments)
      .set({
        status: "unmatched",
        holdReason: `voucher not delivered (${outcome.followUpError}): refund it or sell another`,
      })
      .where(eq(payments.id, paymentId));
    await audit(tx, actor, ctx.clock.now(), {
      action: "payment.sale_failed",
      entity: "payment",
      entityId: paymentId,
      reason: String(outcome.followUpError),
      details: { intentId: intent.id },
    });
  }
  return outcome;
}

/**
 * What the payment was for. It runs in a savepoint: if the plan change is no longer possible (the
 * plan was retired meanwhile, say), the money stays on the account as credit and the reason is kept.
 */
async function followUp(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  intent: IntentRow,
): Promise<Record<string, unknown>> {
  if (intent.purpose === "balance") return {};
  try {
    return await tx.transaction(async (sp) => {
      if (intent.purpose === "plan_change" && intent.subscriptionId !== null && intent.planId !== null) {
        const quote = await changePlanInTx(sp, ctx, actor, {
          subscriptionId: intent.subscriptionId,
          planId: intent.planId,
        });
        return {
          planChange: quote.kind,
          chargeCents: quote.chargeCents,
          effectiveAt: quote.effectiveAt.toISOString(),
        };
      }
      if (intent.purpose === "voucher" && intent.planId !== null) {
        const voucher = await sellVoucherInTx(sp, ctx, actor, {
          planId: intent.planId,
          phone: intent.phone,
          language: await languageFor(sp, intent.customerId),
        });
        return { voucherId: voucher.voucherId };
      }
      return {};
    });
  } catch (error) {
    if (!(error instanceof BillingError)) throw error;
    return { followUpError: error.message, followUpCode: error.code };
  }
}
