import { eq, sql } from "drizzle-orm";
import { type Executor, queryRows } from "../db/client.ts";
import { paymentIntents } from "../db/schema/index.ts";
import { normaliseAccountReference } from "./accounts.ts";
import { audit } from "./audit.ts";
import type { Actor, BillingContext } from "./context.ts";
import { recordCallbackOutcome } from "./intents/callbacks.ts";
import type { IntentRow } from "./intents/common.ts";
import { adoptReceipt, settlePaidIntent } from "./intents/settle.ts";
import { recordPaymentByReferenceInTx, recordUncreditedPaymentInTx } from "./payments.ts";

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

/** How close to a push a paybill confirmation of it can be (M-Pesa refuses the same amount to
 * the same receiver within two minutes, so a real second payment cannot hide in this window). */
const pushWindowMs = 5 * 60_000;

/**
 * A paybill/till payment made from the phone's menu (or M-Pesa's confirmation of a push). The
 * account typed by the payer decides whose it is; an unknown one waits in the unmatched queue.
 * The MSISDN arrives masked, so it is not used. One identity per payment: a push settled by a
 * status query is known only by its checkout id until its receipt arrives; when this confirmation
 * is that push's (same account reference as the push showed, same amount, moments after it was
 * sent), the payment adopts the receipt instead of being credited a second time.
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

  const push = await pushOfThisPayment(tx, input, now);
  if (push?.paymentId != null) {
    await adoptReceipt(tx, push, input.transId, now);
    return {
      result: { paymentId: push.paymentId, duplicate: true, matched: true, customerId: push.customerId },
      flag: "receipt_of_push",
    };
  }
  if (push) {
    // The push's own result has not come (its callback may be lost): this is that payment, so it
    // settles the intent, and the callback or status query that follows finds it paid.
    const settled = await settlePaidIntent(
      tx,
      ctx,
      actor,
      push,
      {
        checkoutRequestId: push.checkoutRequestId!,
        outcome: "paid",
        reason: "Paid (paybill confirmation)",
        receipt: input.transId,
        amountCents: input.amountCents,
        phone: push.phone,
        source: "callback",
      },
      now,
    );
    return {
      result: {
        paymentId: settled.paymentId ?? 0,
        duplicate: settled.status === "duplicate",
        matched: true,
        customerId: push.customerId,
      },
      flag: settled.status === "credited" ? "settled_push" : settled.status,
    };
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
 * The push this confirmation is M-Pesa's record of, if any: one sent moments before with the same
 * account reference and amount, either still waiting for its result, or settled by a status query
 * and so without a receipt yet. Locked, as intents come first in the lock order.
 */
async function pushOfThisPayment(tx: Executor, input: PaybillPayment, now: Date): Promise<IntentRow | null> {
  const reference = normaliseAccountReference(input.billRef);
  if (!reference) return null;
  const paidAt = (input.paidAt ?? now).getTime();
  const rows = await queryRows<{ id: number }>(
    tx,
    sql`select i.id from payment_intents i left join payments p on p.id = i.payment_id
        where upper(i.account_reference) = ${reference} and i.amount_cents = ${input.amountCents}
          and i.mpesa_receipt is null and i.checkout_request_id is not null
          and ((i.payment_id is null and (i.status in ('pending', 'timed_out') or i.push_uncertain))
               or p.provider_ref like 'stk:%')
          and i.sent_at between ${new Date(paidAt - pushWindowMs).toISOString()}::timestamptz
                            and ${new Date(paidAt + pushWindowMs).toISOString()}::timestamptz
          and not exists (select 1 from payments k where k.provider = 'mpesa' and k.provider_ref = ${input.transId})
        order by i.id
        for update of i`,
  );
  if (rows.length !== 1) return null;
  const [intent] = await tx.select().from(paymentIntents).where(eq(paymentIntents.id, rows[0]!.id));
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
