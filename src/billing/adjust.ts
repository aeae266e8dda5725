import { eq } from "drizzle-orm";
import { customers, invoiceLines, invoices } from "../db/schema/index.ts";
import { audit, requireReason } from "./audit.ts";
import { type Actor, type BillingContext, BillingError } from "./context.ts";
import { balanceOf, oneCustomer, postLedgerEntry, settleOpenInvoices } from "./ledger.ts";
import { lockCustomerMoney } from "./money-lock.ts";
import { restoreIfSettled } from "./restore.ts";

/**
 * An admin corrects a customer's balance: a mistyped cash payment, a payment credited to the wrong
 * account or twice, a goodwill credit, a charge agreed with the customer. Nothing already recorded
 * is edited (a payment stays what was received, an issued invoice what was billed): the correction
 * is a new entry of its own, with its reason, under the customer's money lock like every writer.
 *
 * - A credit (amount > 0) is a ledger `credit`: it pays open invoices, oldest first, and brings back
 *   service that was waiting for that money, as a payment would (without a receipt: no money came in).
 * - A charge (amount < 0) is a `manual` invoice of that amount, due now, paid at once from any
 *   credit the customer holds. Like an opening balance it never suspends service by itself (dunning
 *   follows recurring and proration invoices): it is what the customer owes, shown in the balance.
 */

/** At most KES 1,000,000 either way in one correction: a typo guard, not a rule of money. */
export const MAX_ADJUSTMENT_CENTS = 100_000_000;

export interface AdjustmentInput {
  customerId: number;
  /** Cents: positive credits the customer, negative charges them. */
  amountCents: number;
  reason: string;
}

export interface AdjustmentResult {
  balanceCents: number;
  /** Subscriptions brought back because the credit settled what they waited for. */
  restoredSubscriptionIds: number[];
}

export async function adjustBalance(
  ctx: BillingContext,
  actor: Actor,
  input: AdjustmentInput,
): Promise<AdjustmentResult> {
  const amount = input.amountCents;
  if (!Number.isSafeInteger(amount) || amount === 0 || Math.abs(amount) > MAX_ADJUSTMENT_CENTS)
    throw new BillingError(
      "invalid_amount",
      "An adjustment is a whole number of cents, not zero, at most KES 1,000,000 either way.",
    );
  const reason = requireReason(input.reason);
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const money = await lockCustomerMoney(tx, [input.customerId]);
    const [customer] = await tx.select().from(customers).where(eq(customers.id, input.customerId));
    if (!customer) throw new BillingError("unknown_customer", "No such customer.");
    let invoiceId: number | null = null;
    if (amount > 0) {
      await postLedgerEntry(tx, money, {
        customerId: customer.id,
        kind: "credit",
        amountCents: amount,
        memo: `Adjustment: ${reason}`,
        at: now,
      });
    } else {
      const [invoice] = await tx
        .insert(invoices)
        .values({ customerId: customer.id, kind: "manual", amountCents: -amount, dueAt: now, issuedAt: now })
        .returning({ id: invoices.id });
      invoiceId = invoice!.id;
      await tx
        .insert(invoiceLines)
        .values({ invoiceId, description: `Adjustment: ${reason}`, amountCents: -amount });
      await postLedgerEntry(tx, money, {
        customerId: customer.id,
        kind: "invoice",
        amountCents: amount,
        invoiceId,
        memo: `Adjustment: ${reason}`,
        at: now,
      });
    }
    await settleOpenInvoices(tx, money, now, oneCustomer(customer.id));
    const balanceCents = await balanceOf(tx, customer.id);
    await audit(tx, actor, now, {
      action: "balance.adjusted",
      entity: "customer",
      entityId: customer.id,
      reason,
      details: { amountCents: amount, balanceCents, ...(invoiceId ? { invoiceId } : {}) },
    });
    const restoredSubscriptionIds =
      amount > 0 ? await restoreIfSettled(tx, ctx, actor, customer.id, now) : [];
    return { balanceCents, restoredSubscriptionIds };
  });
}
