import { eq, sql } from "drizzle-orm";
import { type Executor, queryRows } from "../../db/client.ts";
import { type IntentStatus, paymentIntents } from "../../db/schema/index.ts";
import { audit } from "../audit.ts";
import type { Actor, BillingContext } from "../context.ts";
import { formatKes } from "../money.ts";
import { recordUncreditedPaymentInTx } from "../payment-rows.ts";
import { recordCallbackOutcome } from "./callbacks.ts";
import { type IntentRow, tellFailure } from "./common.ts";
import { creditIntent, creditQueuedMoney, recordedMoneyOfPush } from "./credit.ts";
import { settleOrphanSuccess } from "./orphans.ts";
import { adoptReceipt } from "./receipts.ts";
import { stopAsking } from "./timeout.ts";

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
  /** `statement`: an admin read the payment off M-Pesa's statement (statement.ts). */
  source: "callback" | "query" | "statement";
  /** The inbox row the request was stored in before processing (none for a status query). */
  inboxId?: number | null;
  /**
   * When a callback reached us, if it is processed later (retried, spooled while the database was
   * away): an orphan success is matched to the requests of that time (orphans.ts).
   */
  receivedAt?: Date;
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
  let intent = await lockIntentOfCheckout(tx, result.checkoutRequestId);
  if (!intent) {
    await waitForCheckoutIdsBeingStored(tx, result.outcome === "paid" ? (result.phone ?? null) : null);
    intent = await lockIntentOfCheckout(tx, result.checkoutRequestId);
  }
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
  // M-Pesa has answered for a push that timed out without an answer: it is asked about no more.
  if (intent?.nextQueryAt) await stopAsking(tx, intent.id);
  else if (!intent && outcome.intentId !== null) await stopAsking(tx, outcome.intentId);
  await recordCallbackOutcome(tx, now, {
    inboxId: result.inboxId,
    kind: callbackKind(result),
    reference: result.checkoutRequestId,
    body: result.raw,
    flag: callbackFlag(outcome.status),
  });
  return outcome;
}

async function lockIntentOfCheckout(tx: Executor, checkoutRequestId: string): Promise<IntentRow | undefined> {
  const [intent] = await tx
    .select()
    .from(paymentIntents)
    .where(eq(paymentIntents.checkoutRequestId, checkoutRequestId))
    .for("update");
  return intent;
}

/**
 * A callback can overtake the storing of its own checkout id: M-Pesa posts it as soon as the payer
 * answers, while the dispatcher's update of the intent is running or committing. Locking the
 * intents pushed and not yet answered (no checkout id, no error recorded since the claim) waits for
 * such updates, so the id can be looked up again and found. An update the server has not received
 * yet is not waited for: a success then takes its intent as an orphan (that update finds the id
 * taken and changes nothing), and a failure is recorded as unknown, which the dispatcher settles
 * once it has stored the id (it waits for this lock, so it sees the record).
 *
 * The locks are held to the end of the settlement. A success carries the payer's phone, so only
 * that payer's pushes are locked; a failure carries none, but settles without further locks.
 * Only a checkout id not found at first pays for this.
 */
async function waitForCheckoutIdsBeingStored(tx: Executor, phone: string | null): Promise<void> {
  await queryRows(
    tx,
    sql`select id from payment_intents
        where status = 'pending' and checkout_request_id is null
          and send_attempts > 0 and last_error is null
          ${phone ? sql`and phone = ${phone}` : sql``}
        order by id
        for update`,
  );
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
  if (!intent.pushUncertain) await tellFailure(tx, now, intent, result.reason, result.providerCode);
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
  if (intent.paymentId !== null) return settleRepeat(tx, ctx, actor, intent, result, now);

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
    const paymentId = await holdForReview(
      tx,
      now,
      intent,
      { providerRef, amountCents: paid },
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

  const recorded = await recordedMoneyOfPush(tx, intent, result, receipt);
  if (recorded.kind === "maybe_paybill") {
    // The status query says paid, and a paybill payment that may be this very money is already
    // recorded: crediting both could pay twice, crediting neither could lose one. An admin decides.
    const paymentId = await holdForReview(
      tx,
      now,
      intent,
      { providerRef, amountCents: paid },
      `paid push (status query); may be the same money as paybill payment ${recorded.receipt}: check before crediting`,
    );
    await markPaid(tx, intent, result, now, {
      resultDesc: "Paid: held for review",
      paymentId,
      outcome: { heldForReview: true },
    });
    return {
      status: "queued",
      intentId: intent.id,
      paymentId: paymentId ?? undefined,
      intentStatus: "succeeded",
    };
  }
  if (recorded.kind === "placed") {
    // Queued before its checkout id was known, then placed on an account by an admin: that was this
    // money, credited once already. The intent points at it; what it was for is left to the admin,
    // who chose where the money went.
    await markPaid(tx, intent, result, now, {
      resultDesc: "Paid: placed by an admin from the unmatched queue",
      mpesaReceipt: receipt ?? recorded.receipt,
      paymentId: recorded.paymentId,
      outcome: { placedByAdmin: true },
    });
    await audit(tx, actor, now, {
      action: "payment_intent.succeeded",
      entity: "payment_intent",
      entityId: intent.id,
      details: { paymentId: recorded.paymentId, placedByAdmin: true, source: result.source },
    });
    return {
      status: "duplicate",
      intentId: intent.id,
      paymentId: recorded.paymentId,
      intentStatus: "succeeded",
    };
  }
  // A query's "paid" whose paybill confirmation is recorded is settled under its receipt, as the
  // callback would be: one payment row, never a second one queued beside it.
  const ref = recorded.kind === "paybill" ? recorded.receipt : providerRef;
  const credit =
    recorded.kind === "queued"
      ? await creditQueuedMoney(tx, ctx, actor, intent, recorded.paymentId)
      : await creditIntent(tx, ctx, actor, intent, { providerRef: ref, amountCents: paid, now });
  const knownReceipt =
    receipt ?? (recorded.kind === "queued" || recorded.kind === "paybill" ? recorded.receipt : null);
  await tx.execute(sql`
    update payment_intents set status = 'succeeded', result_code = ${result.providerCode ?? null}::int,
      result_desc = ${result.reason}, mpesa_receipt = ${knownReceipt}, payment_id = ${credit.paymentId},
      outcome = ${JSON.stringify(credit.outcome)}::jsonb,
      checkout_request_id = coalesce(checkout_request_id, nullif(${result.checkoutRequestId}::text, '')),
      settled_at = ${now.toISOString()}::timestamptz, updated_at = ${now.toISOString()}::timestamptz
    where id = ${intent.id}`);
  return {
    status: credit.held ? "queued" : credit.duplicate ? "duplicate" : "credited",
    intentId: intent.id,
    paymentId: credit.paymentId ?? undefined,
    intentStatus: "succeeded",
  };
}

/** The intent succeeded, its money recorded as `paid.paymentId` (credited or held). */
async function markPaid(
  tx: Executor,
  intent: IntentRow,
  result: StkResult,
  now: Date,
  paid: {
    resultDesc: string;
    paymentId: number | null;
    outcome: Record<string, unknown>;
    mpesaReceipt?: string | null;
  },
): Promise<void> {
  await tx
    .update(paymentIntents)
    .set({
      status: "succeeded",
      resultCode: result.providerCode ?? null,
      settledAt: now,
      updatedAt: now,
      ...paid,
    })
    .where(eq(paymentIntents.id, intent.id));
}

/** A push's payment recorded without a credit, waiting in the unmatched queue for an admin. */
function holdForReview(
  tx: Executor,
  now: Date,
  intent: IntentRow,
  payment: { providerRef: string; amountCents: number; phone?: string },
  reason: string,
): Promise<number | null> {
  return recordUncreditedPaymentInTx(
    tx,
    now,
    {
      method: "mpesa_stk",
      provider: "mpesa",
      providerRef: payment.providerRef,
      amountCents: payment.amountCents,
      phone: payment.phone ?? intent.phone,
      accountReference: `intent ${intent.id}`,
    },
    "unmatched",
    reason,
  );
}

/** Another success report for an intent already paid. */
async function settleRepeat(
  tx: Executor,
  ctx: BillingContext,
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
    await adoptReceipt(tx, intent, receipt, now, { ctx, actor });
    return duplicate;
  }
  // Two prompts for one intent were both paid (a retried push): the second is real money too.
  if (!result.amountCents || result.amountCents <= 0) return { status: "malformed", intentId: intent.id };
  const paymentId = await holdForReview(
    tx,
    now,
    intent,
    { providerRef: receipt, amountCents: result.amountCents, phone: result.phone ?? undefined },
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
