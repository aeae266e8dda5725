import { and, eq, type SQL, sql } from "drizzle-orm";
import { type Executor, queryRows } from "../../db/client.ts";
import { typedReference } from "../../db/schema/columns.ts";
import { payments } from "../../db/schema/index.ts";
import { normaliseAccountReference } from "../accounts.ts";
import { audit } from "../audit.ts";
import {
  closedAccount,
  closedAccountOutcome,
  heldForClosedAccountSql,
  keepQueuedForClosedAccount,
} from "../closed-accounts.ts";
import { type Actor, type BillingContext, BillingError } from "../context.ts";
import { lockCustomerMoney } from "../money-lock.ts";
import { enqueueMessage } from "../outbox.ts";
import { recordUncreditedPaymentInTx } from "../payment-rows.ts";
import { applyPaymentInTx } from "../payments.ts";
import { changePlanInTx } from "../plan-change.ts";
import { creditUnmatchedPaymentInTx } from "../unmatched.ts";
import { sellVoucherInTx } from "../vouchers.ts";
import { type IntentRow, languageFor, pushWindowMs } from "./common.ts";
import type { StkResult } from "./settle.ts";

export type RecordedMoney =
  | { kind: "none" }
  | { kind: "queued"; paymentId: number; receipt: string | null }
  | { kind: "placed"; paymentId: number; receipt: string | null }
  | { kind: "paybill"; receipt: string }
  | { kind: "maybe_paybill"; receipt: string };

/**
 * Whether the money of this push is already recorded: waiting in the unmatched queue (a paid
 * prompt queued before its checkout id was known, or this receipt held), already placed on an
 * account by an admin from that queue, or, for a status query's "paid", as a paybill payment: M-Pesa's
 * record of this push (`paybill`), or one that may be the same money (`maybe_paybill`).
 */
export async function recordedMoneyOfPush(
  tx: Executor,
  intent: IntentRow,
  result: StkResult,
  receipt: string | null,
): Promise<RecordedMoney> {
  const [recorded] = await queryRows<{ id: number; provider_ref: string; status: string }>(
    tx,
    // Two index reads (the receipt's key; the reference an early callback's payment was queued under).
    sql`select id, provider_ref, status from (
          select id, provider_ref, status from payments
          where provider = 'mpesa' and provider_ref = ${receipt ?? ""} and status = 'unmatched'
          union all
          select id, provider_ref, status from payments
          where account_reference = ${`checkout ${result.checkoutRequestId}`} and provider = 'mpesa'
        ) recorded
        order by id limit 1`,
  );
  if (recorded) {
    const ref = recorded.provider_ref;
    return {
      kind: recorded.status === "unmatched" ? "queued" : "placed",
      paymentId: Number(recorded.id),
      receipt: ref.startsWith("stk:") ? null : ref,
    };
  }
  if (result.source !== "query" || !intent.accountReference || !intent.sentAt) return { kind: "none" };
  const reference = normaliseAccountReference(intent.accountReference);
  const sentAt = intent.sentAt.getTime();
  const window = sql`${pushWindowMs / 1000} * interval '1 second'`;
  // Where a callback bringing its receipt would have left it: credited to this account, or held
  // because the account is closed. Anything else (held for another short code, say) is not taken for
  // this push's money on a status query's word.
  const whereOwn =
    intent.customerId === null
      ? sql`false`
      : sql`((p.status = 'applied' and p.customer_id = ${intent.customerId}::int) or ${heldForClosedAccountSql(intent.customerId)})`;
  const paybills = await queryRows<{
    provider_ref: string;
    received_at: string | Date;
    pushes: number;
    own: boolean;
  }>(
    tx,
    sql`select p.provider_ref, p.received_at, ${whereOwn} as own,
          (select count(*)::int from payment_intents j
           where upper(j.account_reference) = ${reference} and j.amount_cents = p.amount_cents
             and j.sent_at between p.received_at - ${window} and p.received_at + ${window}
             -- A prompt the payer cancelled, M-Pesa declined, or paid at another amount is not this
             -- payment, unless an earlier prompt of it may still be open (a payer asking again after
             -- cancelling is common: their payment is not held as fitting two pushes).
             and (j.status not in ('cancelled', 'failed') or j.push_uncertain)) as pushes
        from payments p
        where p.method = 'mpesa_c2b' and ${typedReference(sql`p.account_reference`)} = ${reference}
          and p.amount_cents = ${intent.amountCents} and p.status <> 'duplicate'
          and p.received_at between ${new Date(sentAt - 5 * 60_000).toISOString()}::timestamptz
                                and ${new Date(sentAt + 5 * 60_000).toISOString()}::timestamptz
          and not exists (select 1 from payment_intents i where i.payment_id = p.id)
        order by p.id
        limit 2`,
  );
  const [paybill] = paybills;
  if (!paybill) return { kind: "none" };
  // The rule a paybill confirmation is taken for a push's receipt by (paybill.ts), the other way
  // round: the only paybill payment that fits, paid within the push's window, that fits no other
  // push. Held as a second payment instead, one payment would wait in the queue beside its own
  // record, for an admin to pay out twice.
  const own =
    paybills.length === 1 &&
    paybill.own === true &&
    Number(paybill.pushes) === 1 &&
    Math.abs(new Date(paybill.received_at).getTime() - sentAt) <= pushWindowMs;
  return { kind: own ? "paybill" : "maybe_paybill", receipt: paybill.provider_ref };
}

/** The push's money was waiting in the unmatched queue: it is this intent's, so it is taken from there. */
export async function creditQueuedMoney(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  intent: IntentRow,
  paymentId: number,
): Promise<IntentCredit> {
  if (intent.purpose === "voucher" || intent.customerId === null) {
    const [claimed] = await tx
      .update(payments)
      .set({
        status: intent.purpose === "voucher" ? "applied" : "unmatched",
        holdReason: intent.purpose === "voucher" ? null : "no account to credit",
        accountReference: `${intent.purpose === "voucher" ? "voucher" : "intent"} ${intent.id}`,
      })
      .where(and(eq(payments.id, paymentId), eq(payments.status, "unmatched")))
      .returning({ id: payments.id });
    if (!claimed || intent.purpose !== "voucher") return { paymentId, duplicate: true, outcome: {} };
    return { paymentId, duplicate: false, outcome: await deliverSale(tx, ctx, actor, intent, paymentId) };
  }
  const closed = await closedAccount(tx, await lockCustomerMoney(tx, [intent.customerId]), intent.customerId);
  if (closed) {
    await keepQueuedForClosedAccount(tx, ctx.clock.now(), closed, paymentId);
    return { paymentId, duplicate: false, held: true, outcome: closedAccountOutcome(closed) };
  }
  const applied = await creditUnmatchedPaymentInTx(tx, ctx, actor, paymentId, intent.customerId);
  const outcome =
    applied || (await onAccount(tx, sql`id = ${paymentId}`, intent.customerId))
      ? await followUp(tx, ctx, actor, intent)
      : moneyElsewhere();
  if (applied?.restoredSubscriptionIds.length)
    outcome.restoredSubscriptionIds = applied.restoredSubscriptionIds;
  return { paymentId, duplicate: applied === null, outcome };
}

/**
 * Whether the payment `where` names is credited to this customer. A push's money recorded before its
 * own callback (a paybill confirmation, the unmatched queue) may have been placed on another account
 * or given back by an admin meanwhile: what it was for (a plan change) is then not done on credit
 * the customer does not have.
 */
async function onAccount(tx: Executor, where: SQL, customerId: number): Promise<boolean> {
  const [row] = await queryRows<{ ok: boolean }>(
    tx,
    sql`select exists (select 1 from payments where ${where} and status = 'applied'
          and customer_id = ${customerId}) as ok`,
  );
  return row?.ok === true;
}

const moneyElsewhere = (): Record<string, unknown> => ({
  followUpError: "its money was placed elsewhere or given back",
  followUpCode: "money_elsewhere",
});

/** What crediting a push's money came to; `held`: it waits in the unmatched queue (a closed account). */
export interface IntentCredit {
  paymentId: number | null;
  duplicate: boolean;
  held?: boolean;
  outcome: Record<string, unknown>;
}

/** Credits the payment and carries out what it was for, once per intent. */
export async function creditIntent(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  intent: IntentRow,
  payment: { providerRef: string; amountCents: number; now: Date },
): Promise<IntentCredit> {
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
  if (applied.heldReason)
    return {
      paymentId: applied.paymentId,
      duplicate: applied.duplicate,
      held: true,
      outcome: closedAccountOutcome({ holdReason: applied.heldReason }),
    };
  const outcome =
    !applied.duplicate ||
    (await onAccount(
      tx,
      sql`provider = 'mpesa' and provider_ref = ${payment.providerRef}`,
      intent.customerId,
    ))
      ? await followUp(tx, ctx, actor, intent)
      : moneyElsewhere();
  if (applied.restoredSubscriptionIds.length)
    outcome.restoredSubscriptionIds = applied.restoredSubscriptionIds;
  return { paymentId: applied.paymentId, duplicate: applied.duplicate, outcome };
}

/**
 * A sale paid without an account (a voucher): when it cannot be delivered (the plan was retired
 * meanwhile, say), the payment is not marked done with nothing sold: it goes back to the admin's
 * queue with the reason, to be refunded or sold on another plan.
 */
export async function deliverSale(
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
    // The buyer paid and got nothing: they are told, so they do not pay again or wait for a code.
    await enqueueMessage(tx, ctx.clock.now(), {
      recipient: intent.phone,
      language: await languageFor(tx, intent),
      template: "voucher_not_issued",
      params: { amountCents: intent.amountCents },
      dedupeKey: `voucher_not_issued:${intent.id}`,
    });
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
export async function followUp(
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
          // The charge is what the subscriber was quoted and paid, not the slightly smaller share
          // of the period left by the time the money arrived.
          paidCents: intent.amountCents,
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
          language: await languageFor(sp, intent),
          routerId: intent.routerId,
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
