import { and, desc, eq, sql } from "drizzle-orm";
import type { Executor } from "../db/client.ts";
import { payments } from "../db/schema/index.ts";
import { findCustomerByAccountReference } from "./accounts.ts";
import { audit, requireReason } from "./audit.ts";
import { closedAccount } from "./closed-accounts.ts";
import { type Actor, type BillingContext, BillingError } from "./context.ts";
import { lockCustomerMoney } from "./money-lock.ts";
import { type ApplyPaymentResult, creditPayment } from "./payments.ts";

/**
 * The unmatched queue: money received that credited nobody yet (see `payments.hold_reason`), and
 * how an admin, or a settlement that finds its money waiting there, takes a payment out of it.
 */

export async function listUnmatchedPayments(db: Executor) {
  return db
    .select()
    .from(payments)
    .where(eq(payments.status, "unmatched"))
    .orderBy(desc(payments.receivedAt));
}

/**
 * An admin decides which account an unmatched payment belongs to. The status flip is guarded in SQL
 * so two admins assigning the same payment at once credit it once.
 */
export async function assignUnmatchedPayment(
  ctx: BillingContext,
  actor: Actor,
  input: { paymentId: number; accountNumber: string },
): Promise<ApplyPaymentResult> {
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const customer = await findCustomerByAccountReference(tx, input.accountNumber);
    if (!customer) throw new BillingError("unknown_account", `No account ${input.accountNumber}.`);
    if (await closedAccount(tx, await lockCustomerMoney(tx, [customer.id]), customer.id))
      throw new BillingError(
        "account_closed",
        `${customer.accountNumber}'s sign-up was rejected: money placed there would reach nobody. Resubscribe the account first, or give the money back.`,
      );
    const result = await creditUnmatchedPaymentInTx(tx, ctx, actor, input.paymentId, customer.id);
    if (!result) throw new BillingError("not_unmatched", "That payment is not waiting to be assigned.");
    await audit(tx, actor, now, {
      action: "payment.assigned",
      entity: "payment",
      entityId: input.paymentId,
      details: { accountNumber: customer.accountNumber },
    });
    return result;
  });
}

/**
 * Credits a payment waiting in the unmatched queue to a customer: an admin's assignment, or a
 * settlement that finds the money it is about already recorded there (a paid prompt queued before
 * its checkout id was known). The status flip is guarded in SQL, so two claims credit it once;
 * null when it was not waiting, or when the customer's account is closed to payments (it keeps
 * waiting: closed-accounts.ts).
 */
export async function creditUnmatchedPaymentInTx(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  paymentId: number,
  customerId: number,
): Promise<ApplyPaymentResult | null> {
  const now = ctx.clock.now();
  const money = await lockCustomerMoney(tx, [customerId]);
  if (await closedAccount(tx, money, customerId)) return null;
  const [claimed] = await tx
    .update(payments)
    .set({ customerId, status: "applied", holdReason: null })
    .where(and(eq(payments.id, paymentId), eq(payments.status, "unmatched")))
    .returning();
  if (!claimed) return null;
  return creditPayment(
    tx,
    ctx,
    actor,
    money,
    claimed.id,
    customerId,
    {
      method: claimed.method,
      provider: claimed.provider,
      providerRef: claimed.providerRef,
      amountCents: claimed.amountCents,
    },
    now,
  );
}

/**
 * An admin gave an unmatched payment's money back to the payer (an M-Pesa reversal, cash): it leaves
 * the queue as `refunded`, with the reason, and is never credited by anyone after (every claim of a
 * waiting payment is guarded by its `unmatched` status in SQL, so a refund and an assignment at
 * once settle on one of the two).
 */
export async function markUnmatchedRefunded(
  ctx: BillingContext,
  actor: Actor,
  input: { paymentId: number; reason: string },
): Promise<typeof payments.$inferSelect> {
  const reason = requireReason(input.reason);
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const [refunded] = await tx
      .update(payments)
      .set({
        status: "refunded",
        holdReason: sql`coalesce(${payments.holdReason} || '; ', '') || ${`refunded: ${reason}`}`,
      })
      .where(and(eq(payments.id, input.paymentId), eq(payments.status, "unmatched")))
      .returning();
    if (!refunded) throw new BillingError("not_unmatched", "That payment is not waiting to be assigned.");
    await audit(tx, actor, now, {
      action: "payment.refunded",
      entity: "payment",
      entityId: refunded.id,
      reason,
      details: { receipt: refunded.providerRef, amountCents: refunded.amountCents },
    });
    return refunded;
  });
}
