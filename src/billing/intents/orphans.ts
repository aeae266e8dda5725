import { sql } from "drizzle-orm";
import { type Executor, queryRows } from "../../db/client.ts";
import { paymentIntents } from "../../db/schema/index.ts";
import { audit } from "../audit.ts";
import type { Actor, BillingContext } from "../context.ts";
import { recordUncreditedPaymentInTx } from "../payment-rows.ts";
import type { IntentRow } from "./common.ts";
import { type SettleOutcome, type StkResult, settlePaidIntent } from "./settle.ts";

/** How far back an intent can be the one an orphan success belongs to. */
export const orphanWindowMs = 30 * 60_000;

/**
 * A success for a checkout id no intent carries: the push's answer never reached us (the database
 * was away right after Daraja accepted it, the process died, or the answer was lost and the push
 * retried, leaving a second prompt). Money has moved, so it must land somewhere: when exactly one
 * intent fits (same phone and amount, recent, unpaid, and either still waiting for its checkout id or
 * with a push whose outcome was uncertain: one M-Pesa cleanly refused was never prompted) it is settled as that intent, taking this checkout id if it
 * had none; otherwise the payment waits in the unmatched queue with its phone, amount and receipt.
 * Candidates are locked (intent rows come before the customer's money in the lock order), so two
 * orphans for one intent cannot both take it.
 */
export async function settleOrphanSuccess(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  result: StkResult,
  now: Date,
): Promise<SettleOutcome> {
  const receipt = result.receipt ?? null;
  const amountCents = result.amountCents ?? null;
  if (result.source !== "callback" || !receipt || amountCents === null || amountCents <= 0)
    return { status: "unknown_checkout", intentId: null };

  // Counted back from when the callback reached us: one processed late (the database was away,
  // the retry job's slow tries) belongs to the requests of that time, not to any made since.
  const arrived = result.receivedAt && result.receivedAt.getTime() < now.getTime() ? result.receivedAt : now;
  const since = new Date(arrived.getTime() - orphanWindowMs).toISOString();
  const candidates = result.phone
    ? await queryRows<{ id: number }>(
        tx,
        sql`select id from payment_intents
            where phone = ${result.phone} and amount_cents = ${amountCents} and payment_id is null
              and status <> 'succeeded' and created_at >= ${since}::timestamptz and created_at <= ${arrived.toISOString()}::timestamptz
              and (push_uncertain or (status = 'pending' and checkout_request_id is null))
            order by id
            for update`,
      )
    : [];
  if (candidates.length === 1) {
    const [intent] = await tx
      .select()
      .from(paymentIntents)
      .where(sql`${paymentIntents.id} = ${candidates[0]!.id}`);
    return settlePaidIntent(tx, ctx, actor, intent as IntentRow, result, now);
  }

  const [repaid] =
    candidates.length === 0 && result.phone
      ? await queryRows<{ id: number }>(
          tx,
          sql`select id from payment_intents
              where phone = ${result.phone} and amount_cents = ${amountCents} and payment_id is not null
                and push_uncertain and created_at >= ${since}::timestamptz and created_at <= ${arrived.toISOString()}::timestamptz
              order by id desc limit 1`,
        )
      : [];
  const paymentId = await recordUncreditedPaymentInTx(
    tx,
    now,
    {
      method: "mpesa_stk",
      provider: "mpesa",
      providerRef: receipt,
      amountCents,
      phone: result.phone ?? undefined,
      accountReference: `checkout ${result.checkoutRequestId}`.slice(0, 64),
    },
    "unmatched",
    repaid
      ? `a second payment for one request (intent ${repaid.id} was already paid)`
      : candidates.length === 0
        ? "paid a prompt no request matches"
        : `paid a prompt that fits ${candidates.length} requests`,
  );
  if (paymentId === null) return { status: "duplicate", intentId: null };
  await audit(tx, actor, now, {
    action: "payment.unmatched",
    entity: "payment",
    entityId: paymentId,
    details: {
      checkoutRequestId: result.checkoutRequestId,
      receipt,
      amountCents,
      candidates: candidates.length,
    },
  });
  return { status: "queued", intentId: null, paymentId };
}
