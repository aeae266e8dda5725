import { and, eq, inArray, sql } from "drizzle-orm";
import { type Executor, queryRows } from "../db/client.ts";
import { intArray } from "../db/params.ts";
import { paymentIntents } from "../db/schema/index.ts";
import { normaliseAccountReference } from "./accounts.ts";
import { audit } from "./audit.ts";
import type { Actor, BillingContext } from "./context.ts";
import { recordCallbackOutcome } from "./intents/callbacks.ts";
import { type IntentRow, pushWindowMs } from "./intents/common.ts";
import { adoptReceipt } from "./intents/receipts.ts";
import { settlePaidIntent } from "./intents/settle.ts";
import { intentIdOfWalkInReference } from "./intents/walk-in-reference.ts";
import { recordUncreditedPaymentInTx } from "./payment-rows.ts";
import { recordPaymentByReferenceInTx } from "./payments.ts";

export interface PaybillPayment {
  transId: string;
  billRef: string;
  amountCents: number;
  payerName?: string;
  /** When the payer paid (M-Pesa's TransTime), else when it arrived. */
  paidAt?: Date;
  /** Set when the request must not be credited as is (another business's short code, say). */
  holdReason?: string;
  /** The inbox row the request was stored in before processing. */
  inboxId?: number | null;
  raw?: unknown;
}

export interface PaybillResult {
  paymentId: number;
  duplicate: boolean;
  matched: boolean;
  customerId: number | null;
}

/**
 * A paybill/till payment made from the phone's menu (or M-Pesa's confirmation of a push). The
 * account typed by the payer decides whose it is; an unknown one waits in the unmatched queue.
 * The MSISDN arrives masked, so it is not used. One identity per payment: a push settled by a
 * status query is known only by its checkout id until its receipt arrives; when this confirmation
 * is that push's (same account reference as the push showed, same amount, moments after it was
 * sent), the payment adopts the receipt instead of being credited a second time. (A confirmation
 * that comes before the push's own result is credited as a paybill payment; the push's result
 * then finds its receipt already credited, or the status query finds it: see settle.ts.)
 */
export async function recordPaybillPayment(
  ctx: BillingContext,
  actor: Actor,
  input: PaybillPayment,
): Promise<PaybillResult> {
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const recorded = await recordInTx(tx, ctx, actor, input, now);
    await recordCallbackOutcome(tx, now, {
      inboxId: input.inboxId,
      kind: "c2b_confirmation",
      reference: input.transId,
      body: input.raw,
      flag: recorded.flag,
    });
    return recorded.result;
  });
}

async function recordInTx(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  input: PaybillPayment,
  now: Date,
): Promise<{ result: PaybillResult; flag: string | null }> {
  const base = {
    method: "mpesa_c2b" as const,
    provider: "mpesa",
    providerRef: input.transId,
    amountCents: input.amountCents,
    payerName: input.payerName,
    receivedAt: input.paidAt ?? now,
  };
  if (input.holdReason) {
    const paymentId = await recordUncreditedPaymentInTx(
      tx,
      now,
      { ...base, accountReference: input.billRef },
      "unmatched",
      input.holdReason,
    );
    if (paymentId === null) return { result: await known(tx, input.transId), flag: "duplicate" };
    await audit(tx, actor, now, {
      action: "payment.held",
      entity: "payment",
      entityId: paymentId,
      reason: input.holdReason,
      details: { reference: input.billRef, amountCents: input.amountCents },
    });
    return { result: { paymentId, duplicate: false, matched: false, customerId: null }, flag: "held" };
  }

  const walkIn = await walkInPushOf(tx, input);
  if (walkIn?.paymentId === null) {
    // `TDW<id>` names the push exactly (a walk-in's, or a voucher's): this is its payment, whatever
    // its own result says.
    const settled = await settlePaidIntent(
      tx,
      ctx,
      actor,
      walkIn,
      {
        checkoutRequestId: walkIn.checkoutRequestId ?? `paybill:${input.transId}`,
        outcome: "paid",
        reason: "Paid (M-Pesa confirmation)",
        receipt: input.transId,
        amountCents: input.amountCents,
        phone: walkIn.phone,
        source: "callback",
      },
      now,
    );
    return {
      result: {
        paymentId: settled.paymentId ?? 0,
        duplicate: settled.status === "duplicate",
        matched: true,
        customerId: null,
      },
      flag: settled.status === "credited" ? "walk_in_push" : settled.status,
    };
  }
  // Paid already (by a status query, without its receipt): this confirmation is the push's own only
  // if it came moments after it; a later one is a second payment, and falls through to the queue.
  if (walkIn && walkIn.mpesaReceipt === null && nearPush(walkIn, input, now)) {
    await adoptReceipt(tx, walkIn, input.transId, now);
    return {
      result: { paymentId: walkIn.paymentId!, duplicate: true, matched: true, customerId: null },
      flag: "receipt_of_push",
    };
  }

  const pushes = await queryPushesAwaitingReceipt(tx, input, now);
  if (pushes.length === 1) {
    const push = pushes[0]!;
    await adoptReceipt(tx, push, input.transId, now);
    return {
      result: { paymentId: push.paymentId!, duplicate: true, matched: true, customerId: push.customerId },
      flag: "receipt_of_push",
    };
  }
  if (pushes.length > 1) {
    // It is one of these pushes' receipt, but which cannot be told: an admin decides.
    const ids = pushes.map((p) => p.id).join(", ");
    return recordInTx(
      tx,
      ctx,
      actor,
      { ...input, holdReason: `may be the receipt of pushes ${ids}, each already credited` },
      now,
    );
  }

  const recorded = await recordPaymentByReferenceInTx(tx, ctx, actor, {
    ...base,
    reference: input.billRef,
  });
  return {
    result: recorded,
    flag: recorded.duplicate ? "duplicate" : recorded.matched ? null : "unmatched",
  };
}

/**
 * The pushes this confirmation may be M-Pesa's record of: settled by a status query (so credited
 * under their checkout id, without a receipt), with the account reference the push showed, the
 * same amount, sent moments before.
 *
 * Every push that could become such a one is locked first, pending ones too (intents come first
 * in the lock order), and only then is each checked, in a statement of its own that sees what a
 * settlement holding the lock meanwhile committed. A status query settling a pending push holds
 * that lock while it looks for this very confirmation (credit.ts, `recordedMoneyOfPush`), so one
 * of the two always sees the other: without the pending ones locked, both could look before
 * either had written, and the money would be credited twice.
 */
async function queryPushesAwaitingReceipt(
  tx: Executor,
  input: PaybillPayment,
  now: Date,
): Promise<IntentRow[]> {
  const reference = normaliseAccountReference(input.billRef);
  if (!reference) return [];
  const paidAt = (input.paidAt ?? now).getTime();
  const from = new Date(paidAt - pushWindowMs).toISOString();
  const to = new Date(paidAt + pushWindowMs).toISOString();
  const locked = await queryRows<{ id: number }>(
    tx,
    sql`select i.id from payment_intents i
        where upper(i.account_reference) = ${reference} and i.amount_cents = ${input.amountCents}
          and i.mpesa_receipt is null
          and i.sent_at between ${from}::timestamptz and ${to}::timestamptz
        order by i.id
        for update`,
  );
  if (locked.length === 0) return [];
  const awaiting = await queryRows<{ id: number }>(
    tx,
    sql`select i.id from payment_intents i join payments p on p.id = i.payment_id
        where i.id = any(${intArray(locked.map((r) => Number(r.id)))})
          and i.mpesa_receipt is null and p.provider_ref like 'stk:%'
          and not exists (select 1 from payments k where k.provider = 'mpesa' and k.provider_ref = ${input.transId})`,
  );
  if (awaiting.length === 0) return [];
  return tx
    .select()
    .from(paymentIntents)
    .where(
      inArray(
        paymentIntents.id,
        awaiting.map((r) => Number(r.id)),
      ),
    )
    .orderBy(paymentIntents.id);
}

/** Whether the payer paid within `pushWindowMs` of when the push was sent. */
function nearPush(push: IntentRow, input: PaybillPayment, now: Date): boolean {
  if (!push.sentAt) return false;
  return Math.abs((input.paidAt ?? now).getTime() - push.sentAt.getTime()) <= pushWindowMs;
}

/** The push a walk-in reference (`TDW<id>`) names, locked, when the amount is the one it asked. */
async function walkInPushOf(tx: Executor, input: PaybillPayment): Promise<IntentRow | null> {
  const intentId = intentIdOfWalkInReference(normaliseAccountReference(input.billRef));
  if (intentId === null) return null;
  const [intent] = await tx
    .select()
    .from(paymentIntents)
    .where(and(eq(paymentIntents.id, intentId), eq(paymentIntents.amountCents, input.amountCents)))
    .for("update");
  return intent ?? null;
}

async function known(tx: Executor, transId: string): Promise<PaybillResult> {
  const [row] = await queryRows<{ id: number; customer_id: number | null; status: string }>(
    tx,
    sql`select id, customer_id, status from payments where provider = 'mpesa' and provider_ref = ${transId}`,
  );
  return {
    paymentId: Number(row?.id ?? 0),
    duplicate: true,
    matched: row?.status === "applied",
    customerId: row?.customer_id == null ? null : Number(row.customer_id),
  };
}
