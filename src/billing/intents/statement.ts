import { eq, sql } from "drizzle-orm";
import { queryRows } from "../../db/client.ts";
import { paymentIntents } from "../../db/schema/index.ts";
import { audit } from "../audit.ts";
import { type Actor, type BillingContext, BillingError } from "../context.ts";
import { type SettleOutcome, settlePaidIntent } from "./settle.ts";
import { stopAsking } from "./timeout.ts";

/** An M-Pesa receipt as statements print it (`TLK4ABC12Q`); callbacks carry the same. */
export const RECEIPT_PATTERN = /^[A-Z0-9]{6,20}$/;

/**
 * A push M-Pesa never said the result of (its callback lost, its status queries unanswered), found
 * paid on M-Pesa's statement by an admin: settled as its callback would have settled it, under the
 * statement's receipt and at the amount the prompt asked (M-Pesa takes no partial payments). The
 * receipt is the payment's unique key, so the same money can be recorded no second time, by this or
 * by a late callback. A receipt already recorded for other money is refused: a typing slip must not
 * tie this prompt to somebody else's payment. A receipt waiting in the unmatched queue is taken from
 * it (it was this push's money, queued because it named no account).
 */
export async function settlePushFromStatement(
  ctx: BillingContext,
  actor: Actor,
  input: { intentId: number; receipt: string },
): Promise<SettleOutcome> {
  const receipt = input.receipt.toUpperCase();
  if (!RECEIPT_PATTERN.test(receipt))
    throw new BillingError("invalid", `"${input.receipt}" is not an M-Pesa receipt number.`);
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    // The intent first, then the customer's money (settlePaidIntent): the order of money-lock.ts.
    const [intent] = await tx
      .select()
      .from(paymentIntents)
      .where(eq(paymentIntents.id, input.intentId))
      .for("update");
    if (!intent) throw new BillingError("not_found", `No payment prompt #${input.intentId}.`);
    if (intent.status !== "timed_out")
      throw new BillingError(
        "invalid",
        intent.status === "succeeded"
          ? `Payment prompt #${intent.id} is already paid${intent.mpesaReceipt ? ` (receipt ${intent.mpesaReceipt})` : ""}.`
          : `Payment prompt #${intent.id} did not time out (it is ${intent.status}): M-Pesa gave its result.`,
      );
    const [recorded] = await queryRows<{ id: number; status: string }>(
      tx,
      sql`select id, status from payments
          where provider = 'mpesa' and provider_ref = ${receipt} and status <> 'unmatched'
          limit 1`,
    );
    if (recorded)
      throw new BillingError(
        "conflict",
        `Receipt ${receipt} is already recorded (payment #${recorded.id}, ${recorded.status}): it is other money, or this prompt's, recorded already.`,
      );
    const outcome = await settlePaidIntent(
      tx,
      ctx,
      actor,
      intent,
      {
        // A push whose acceptance was lost has none (dispatch.ts: `pushUncertain`); "" stores none.
        checkoutRequestId: intent.checkoutRequestId ?? "",
        outcome: "paid",
        reason: "Paid: found on M-Pesa's statement",
        receipt,
        amountCents: intent.amountCents,
        phone: intent.phone,
        source: "statement",
      },
      now,
    );
    await stopAsking(tx, intent.id);
    await audit(tx, actor, now, {
      action: "payment_intent.paid_by_statement",
      entity: "payment_intent",
      entityId: intent.id,
      details: { receipt, amountCents: intent.amountCents, status: outcome.status },
    });
    return outcome;
  });
}
