import { and, eq, sql } from "drizzle-orm";
import type { Executor } from "../../db/client.ts";
import { type IntentStatus, mpesaCallbacks, paymentIntents, payments } from "../../db/schema/index.ts";
import { audit } from "../audit.ts";
import { type Actor, type BillingContext, BillingError } from "../context.ts";
import { formatKes } from "../money.ts";
import { applyPaymentInTx, recordUncreditedPaymentInTx } from "../payments.ts";
import { changePlanInTx } from "../plan-change.ts";
import { sellVoucherInTx } from "../vouchers.ts";
import { type IntentRow, languageFor, tellFailure } from "./common.ts";
/** The result of one STK push, as a callback or a status query reports it. */
export interface StkResult {
  checkoutRequestId: string;
  merchantRequestId?: string | null;
  resultCode: number;
  resultDesc: string;
  /** Callbacks carry the receipt and the amount paid; a status query carries neither. */
  receipt?: string | null;
  amountCents?: number | null;
  phone?: string | null;
  source: "callback" | "query";
  /** The body as received, kept in `mpesa_callbacks`. */
  raw: unknown;
}

export type SettleStatus =
  | "credited"
  | "duplicate"
  | "failed"
  | "late_failure"
  | "unknown_checkout"
  | "amount_mismatch"
  | "malformed";

export interface SettleOutcome {
  status: SettleStatus;
  intentId: number | null;
  paymentId?: number;
  intentStatus?: IntentStatus;
}

/** Result codes that mean the payer never answered, as opposed to saying no. */
const unanswered = new Set([1037, 1019]);

const failureReasons: Record<number, string> = {
  1: "Not enough money in M-Pesa",
  2: "Amount below the M-Pesa minimum",
  3: "Amount above the M-Pesa maximum",
  4: "M-Pesa daily limit reached",
  17: "Same amount paid within 2 minutes: try again later",
  1019: "The M-Pesa prompt expired",
  1032: "You cancelled the M-Pesa prompt",
  1037: "Your phone could not be reached",
  2001: "Wrong M-Pesa PIN",
};

export function failureStatus(resultCode: number): IntentStatus {
  if (resultCode === 1032) return "cancelled";
  if (unanswered.has(resultCode)) return "timed_out";
  return "failed";
}

/**
 * Settles an STK push in one transaction. The intent row is locked first, so concurrent copies of
 * one callback (or a callback racing the status query) queue behind each other and the later ones
 * see it settled; the payment's unique (provider, receipt) key makes a paybill confirmation of the
 * same receipt a duplicate too. A success is credited whatever state the intent was in (money has
 * moved), except when the amount differs from what was asked: that payment waits in the unmatched
 * queue for an admin. Failures credit nothing and tell the payer once.
 */
export async function settleStkResult(
  ctx: BillingContext,
  actor: Actor,
  result: StkResult,
): Promise<SettleOutcome> {
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const { recorded, ...outcome } = await settleInTx(tx, ctx, actor, result, now);
    if (recorded) return outcome;
    await tx.insert(mpesaCallbacks).values({
      kind: callbackKind(result),
      reference: result.checkoutRequestId,
      body: (result.raw ?? {}) as Record<string, unknown>,
      flag: callbackFlag(outcome.status),
      receivedAt: now,
    });
    return outcome;
  });
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

export async function settleInTx(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  result: StkResult,
  now: Date,
): Promise<SettleOutcome & { recorded?: boolean }> {
  const [intent] = await tx
    .select()
    .from(paymentIntents)
    .where(eq(paymentIntents.checkoutRequestId, result.checkoutRequestId))
    .for("update");
  if (!intent) return { status: "unknown_checkout", intentId: null };

  if (result.resultCode !== 0) {
    if (intent.status !== "pending")
      return { status: "late_failure", intentId: intent.id, intentStatus: intent.status };
    const status = failureStatus(result.resultCode);
    await tx
      .update(paymentIntents)
      .set({
        status,
        resultCode: result.resultCode,
        resultDesc: result.resultDesc,
        settledAt: now,
        updatedAt: now,
      })
      .where(eq(paymentIntents.id, intent.id));
    await tellFailure(tx, now, intent, failureReasons[result.resultCode] ?? result.resultDesc);
    await audit(tx, actor, now, {
      action: `payment_intent.${status}`,
      entity: "payment_intent",
      entityId: intent.id,
      details: { resultCode: result.resultCode, resultDesc: result.resultDesc, source: result.source },
    });
    return { status: "failed", intentId: intent.id, intentStatus: status };
  }

  if (intent.paymentId !== null) {
    if (result.receipt && !intent.mpesaReceipt)
      await tx
        .update(paymentIntents)
        .set({ mpesaReceipt: result.receipt, updatedAt: now })
        .where(eq(paymentIntents.id, intent.id));
    return {
      status: "duplicate",
      intentId: intent.id,
      paymentId: intent.paymentId,
      intentStatus: intent.status,
    };
  }

  // A status query says "paid" without a receipt or an amount: the intent's amount was asked and
  // M-Pesa does not take partial payments, so that is what was paid.
  const receipt = result.receipt ?? null;
  let amountCents = result.amountCents ?? null;
  if (result.source === "query") {
    amountCents = intent.amountCents;
  } else if (!receipt || amountCents === null || amountCents <= 0) {
    return { status: "malformed", intentId: intent.id };
  }
  const providerRef = receipt ?? `stk:${result.checkoutRequestId}`;
  const paid = amountCents as number;
  const payer = intent.phone;

  if (paid !== intent.amountCents) {
    const paymentId = await recordUncreditedPaymentInTx(
      tx,
      now,
      {
        method: "mpesa_stk",
        provider: "mpesa",
        providerRef,
        amountCents: paid,
        phone: payer,
        accountReference: `intent ${intent.id}`,
      },
      "unmatched",
    );
    await tx
      .update(paymentIntents)
      .set({
        status: "failed",
        resultCode: 0,
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
  const outcome: SettleOutcome = {
    status: credit.duplicate ? "duplicate" : "credited",
    intentId: intent.id,
    paymentId: credit.paymentId ?? undefined,
    intentStatus: "succeeded",
  };
  // The hot path of every paid callback: the intent's new state and the callback record go in one
  // statement (the payment's own audit entry already says who credited what).
  await tx.execute(sql`
    with settled as (
      update payment_intents set status = 'succeeded', result_code = 0, result_desc = ${result.resultDesc},
        mpesa_receipt = ${receipt}, payment_id = ${credit.paymentId}, outcome = ${JSON.stringify(credit.outcome)}::jsonb,
        settled_at = ${now.toISOString()}::timestamptz, updated_at = ${now.toISOString()}::timestamptz
      where id = ${intent.id}
      returning id)
    insert into mpesa_callbacks (kind, reference, body, flag, received_at)
    select ${callbackKind(result)}, ${result.checkoutRequestId}, ${JSON.stringify(result.raw ?? {})}::jsonb,
      ${callbackFlag(outcome.status)}, ${now.toISOString()}::timestamptz
    from settled`);
  return { ...outcome, recorded: true };
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
      return { paymentId, duplicate: false, outcome: await followUp(tx, ctx, actor, intent) };
    // The same receipt came first as a paybill confirmation naming no account (the push's
    // reference): it is this sale, so it leaves the unmatched queue instead of being paid out twice.
    const [claimed] =
      intent.purpose === "voucher"
        ? await tx
            .update(payments)
            .set({ status: "applied", accountReference: `voucher ${intent.id}` })
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
      return { paymentId: claimed.id, duplicate: true, outcome: await followUp(tx, ctx, actor, intent) };
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
