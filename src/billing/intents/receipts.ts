import { eq, sql } from "drizzle-orm";
import { type Executor, queryRows } from "../../db/client.ts";
import { paymentIntents } from "../../db/schema/index.ts";
import { audit } from "../audit.ts";
import { type Actor, type BillingContext, systemActor } from "../context.ts";
import { lockCustomerMoney } from "../money-lock.ts";
import { creditUnmatchedPaymentInTx } from "../unmatched.ts";
import type { IntentRow } from "./common.ts";

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
  /** Given when the receipt comes from the push's own callback (it proves the held payment is real). */
  proof?: { ctx: BillingContext; actor: Actor },
): Promise<void> {
  if (intent.paymentId !== null) {
    const [known] = await queryRows<{ id: number; status: string }>(
      tx,
      sql`select id, status from payments where provider = 'mpesa' and provider_ref = ${receipt}`,
    );
    if (!known) {
      // The customer's money before the payment's row (the order of money-lock.ts): an admin
      // assigning this held payment meanwhile locks them in that order too.
      if (proof && intent.customerId !== null) await lockCustomerMoney(tx, [intent.customerId]);
      const renamed = await queryRows<{ status: string }>(
        tx,
        sql`update payments set provider_ref = ${receipt}
            where id = ${intent.paymentId}::int and provider_ref like 'stk:%' returning status`,
      );
      // Held as possibly the same money as a paybill payment, but its own receipt differs from
      // that one's: it is money of its own, credited now.
      if (proof && renamed[0]?.status === "unmatched" && intent.customerId !== null)
        await creditUnmatchedPaymentInTx(tx, proof.ctx, proof.actor, intent.paymentId, intent.customerId);
    } else if (Number(known.id) !== intent.paymentId) {
      // The receipt was recorded first as a paybill payment while the status query's result was
      // held for review as possibly the same money: it is the same money. The held record, which
      // credited nothing, goes; the intent points at the payment that did.
      const [held] = await queryRows<{ id: number }>(
        tx,
        // Locked, so an admin crediting it meanwhile is waited for and seen (then it stays).
        sql`select id from payments where id = ${intent.paymentId}::int and status = 'unmatched' and provider_ref like 'stk:%'
            for update`,
      );
      if (held) {
        await tx
          .update(paymentIntents)
          .set({ paymentId: Number(known.id), mpesaReceipt: receipt, updatedAt: now })
          .where(eq(paymentIntents.id, intent.id));
        await tx.execute(sql`delete from payments where id = ${Number(held.id)}::int`);
        return;
      }
      // Not waiting any more: an admin credited it, or gave it back, against its hold reason.
      await sameMoneyAsPaidOut(tx, now, proof?.actor, {
        heldPaymentId: intent.paymentId,
        knownId: Number(known.id),
        receipt,
      });
    }
  }
  await tx
    .update(paymentIntents)
    .set({ mpesaReceipt: receipt, updatedAt: now })
    .where(eq(paymentIntents.id, intent.id));
}

/** Audit entity of a finding that one M-Pesa payment was paid out twice (its key: the second payment). */
export const CREDITED_TWICE = "payment_credited_twice";

/**
 * A held push payment an admin took out of the queue (credited it, or gave it back) turns out, by its
 * receipt, to be the money of paybill payment `knownId`. Still waiting in the unmatched queue, that
 * one leaves it as a `duplicate` (guarded by its status in SQL, so an admin acting on it meanwhile
 * is seen): the money is paid out once. Paid out too (credited, or given back), the money went out
 * twice; taking one back is the admins' call (they know what was agreed with the payer), so it is
 * recorded for them to be told (src/bots/admin/mpesa-alerts.ts).
 */
async function sameMoneyAsPaidOut(
  tx: Executor,
  now: Date,
  actor: Actor | undefined,
  found: { heldPaymentId: number; knownId: number; receipt: string },
): Promise<void> {
  const who = actor ?? systemActor("mpesa-receipt");
  const [held] = await queryRows<{ status: string }>(
    tx,
    sql`select status from payments where id = ${found.heldPaymentId}::int`,
  );
  if (held?.status !== "applied" && held?.status !== "refunded") return;
  const done = held.status === "applied" ? "credited already" : "given back already";
  const duplicate = await queryRows<{ id: number }>(
    tx,
    sql`update payments set status = 'duplicate',
          hold_reason = ${`the same money as push payment #${found.heldPaymentId}, ${done}`}
        where id = ${found.knownId}::int and status = 'unmatched' returning id`,
  );
  if (duplicate.length > 0) {
    await audit(tx, who, now, {
      action: "payment.duplicate",
      entity: "payment",
      entityId: found.knownId,
      details: { receipt: found.receipt, samePaymentId: found.heldPaymentId },
    });
    return;
  }
  const [known] = await queryRows<{ status: string }>(
    tx,
    sql`select status from payments where id = ${found.knownId}::int`,
  );
  if (known?.status !== "applied" && known?.status !== "refunded") return;
  await audit(tx, who, now, {
    action:
      held.status === "applied" && known.status === "applied"
        ? "payment.credited_twice"
        : "payment.paid_out_twice",
    entity: CREDITED_TWICE,
    entityId: found.heldPaymentId,
    details: { receipt: found.receipt, samePaymentId: found.knownId },
  });
}
