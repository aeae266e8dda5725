import { eq } from "drizzle-orm";
import { paymentIntents, payments, plans } from "../db/schema/index.ts";
import { audit } from "./audit.ts";
import { type Actor, type BillingContext, BillingError } from "./context.ts";
import { formatKes } from "./money.ts";
import { sellVoucherInTx } from "./vouchers.ts";

/** A voucher sale's payment, held in the unmatched queue (`voucher <intent id>`, credit.ts). */
const HELD_SALE = /^voucher (\d+)$/;

/**
 * A voucher bought by M-Pesa that could not be delivered (its plan retired meanwhile, say) holds
 * its payment in the unmatched queue, and the buyer is told they get a code or their money back.
 * An admin sells them a code of a plan on sale at the price paid: the code goes live and is texted
 * to the payer, and the payment leaves the queue as that sale. The payment row is locked first, so
 * an `/assign` or `/refunded` of it at the same moment waits and then finds it sold.
 */
export async function sellVoucherForHeldPayment(
  ctx: BillingContext,
  actor: Actor,
  input: { paymentId: number; planId: number },
): Promise<{ code: string; expiresAt: Date; phone: string; amountCents: number; planName: string }> {
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const [payment] = await tx.select().from(payments).where(eq(payments.id, input.paymentId)).for("update");
    if (payment?.status !== "unmatched")
      throw new BillingError("not_unmatched", "That payment is not waiting to be assigned.");
    const intentId = HELD_SALE.exec(payment.accountReference ?? "")?.[1];
    if (!intentId || !payment.phone)
      throw new BillingError(
        "not_voucher_sale",
        "That payment was not for a voucher: /assign it to an account, or /refunded it.",
      );
    const [plan] = await tx.select().from(plans).where(eq(plans.id, input.planId));
    if (!plan) throw new BillingError("unknown_plan", "That plan does not exist or is retired.");
    if (plan.priceCents !== payment.amountCents)
      throw new BillingError(
        "price_differs",
        `${formatKes(payment.amountCents)} was paid and ${plan.name} costs ${formatKes(plan.priceCents)}: sell a plan of the price paid, or /refunded it.`,
      );
    const [intent] = await tx
      .select({ language: paymentIntents.language, routerId: paymentIntents.routerId })
      .from(paymentIntents)
      .where(eq(paymentIntents.id, Number(intentId)));
    // Refuses a plan that is retired or not a hotspot plan, as any sale does.
    const sold = await sellVoucherInTx(tx, ctx, actor, {
      planId: input.planId,
      phone: payment.phone,
      language: intent?.language ?? "en",
      routerId: intent?.routerId ?? null,
    });
    await tx.update(payments).set({ status: "applied", holdReason: null }).where(eq(payments.id, payment.id));
    await audit(tx, actor, now, {
      action: "payment.voucher_sold",
      entity: "payment",
      entityId: payment.id,
      details: { voucherId: sold.voucherId, planId: input.planId, intentId: Number(intentId) },
    });
    return {
      code: sold.code,
      expiresAt: sold.expiresAt,
      phone: payment.phone,
      amountCents: payment.amountCents,
      planName: plan.name,
    };
  });
}
