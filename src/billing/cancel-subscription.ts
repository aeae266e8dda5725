import { and, eq, gt, gte, inArray, or, sql } from "drizzle-orm";
import { invoices, ledgerEntries, subscriptions } from "../db/schema/index.ts";
import { audit, requireReason } from "./audit.ts";
import type { Actor, BillingContext } from "./context.ts";
import { oneCustomer, postLedgerEntry, settleOpenInvoices } from "./ledger.ts";
import { lockedSubscription } from "./money-lock.ts";
import { enqueueProvisioning } from "./outbox.ts";
import { issuedNextPeriod } from "./plan-change-bills.ts";

/**
 * Ends a subscription. Invoices for periods not yet started (for a subscriber cut off for
 * non-payment, not served) are voided and whatever was paid on them returns to the customer's
 * credit; so are a plan change's bills for those periods (the next period at the new price), and a
 * plan change's credit on a voided period is taken back, since the whole period's price already
 * returns. The router account is removed.
 */
export async function cancelSubscription(
  ctx: BillingContext,
  actor: Actor,
  input: { subscriptionId: number; reason: string },
) {
  const reason = requireReason(input.reason);
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const { subscription, money } = await lockedSubscription(tx, input.subscriptionId);
    if (subscription.status === "cancelled") return subscription;
    // Not served: a sign-up's whole first period; once the period paid for has ended without
    // rolling on, everything from its end (the renewal they never had) when they were cut off (by
    // dunning or an admin) or are in the grace days dunning gives an unpaid renewal: not renewing
    // then owes nothing. Else from now: served past the grace days unpaid (an admin's resume, say),
    // they owe the period they were using.
    const ended = subscription.currentPeriodEnd <= now;
    const inGrace =
      now.getTime() < subscription.currentPeriodEnd.getTime() + ctx.settings.graceDays * 86_400_000;
    const fromPeriodEnd =
      ended &&
      (subscription.status === "suspended" ||
        (inGrace && (await issuedNextPeriod(tx, subscription))?.status !== "paid"));
    const unservedFrom =
      subscription.status === "pending"
        ? subscription.currentPeriodStart
        : fromPeriodEnd
          ? subscription.currentPeriodEnd
          : now;
    // A plan change's top-up for the next period is due when it starts: at the boundary, unserved
    // too. From now, a charge due this instant is an upgrade of the period being served.
    const atBoundary = subscription.status === "pending" || fromPeriodEnd;
    const unserved = await tx
      .select()
      .from(invoices)
      .where(
        and(
          eq(invoices.subscriptionId, subscription.id),
          sql`${invoices.status} <> 'void'`,
          or(
            and(eq(invoices.kind, "recurring"), gte(invoices.periodStart, unservedFrom)),
            // A plan change's charge for a period not started yet (due when that period starts).
            and(
              eq(invoices.kind, "proration"),
              atBoundary ? gte(invoices.dueAt, unservedFrom) : gt(invoices.dueAt, unservedFrom),
            ),
          ),
        ),
      );
    for (const invoice of unserved) {
      await tx
        .update(invoices)
        .set({ status: "void", paidCents: 0, paidAt: null })
        .where(eq(invoices.id, invoice.id));
      await postLedgerEntry(tx, money, {
        customerId: subscription.customerId,
        kind: "adjustment",
        amountCents: invoice.amountCents,
        invoiceId: invoice.id,
        memo: `invoice ${invoice.id} voided: subscription cancelled`,
        at: now,
      });
    }
    // A downgrade's credit on a voided period ("next period at the cheaper plan"): the period's whole
    // price is already back, so the credit is taken back too.
    const voided = unserved.filter((i) => i.kind === "recurring").map((i) => i.id);
    const credits =
      voided.length === 0
        ? []
        : await tx
            .select()
            .from(ledgerEntries)
            .where(and(eq(ledgerEntries.kind, "credit"), inArray(ledgerEntries.invoiceId, voided)));
    for (const credit of credits)
      await postLedgerEntry(tx, money, {
        customerId: subscription.customerId,
        kind: "adjustment",
        amountCents: -credit.amountCents,
        invoiceId: credit.invoiceId,
        memo: `credit on invoice ${credit.invoiceId} taken back: subscription cancelled`,
        at: now,
      });
    await settleOpenInvoices(tx, money, now, oneCustomer(subscription.customerId));
    const [updated] = await tx
      .update(subscriptions)
      .set({ status: "cancelled", cancelledAt: now, nextPlanId: null })
      .where(eq(subscriptions.id, subscription.id))
      .returning();
    await enqueueProvisioning(tx, now, {
      action: "remove_account",
      subscriptionId: subscription.id,
      routerId: subscription.routerId,
    });
    await audit(tx, actor, now, {
      action: "subscription.cancelled",
      entity: "subscription",
      entityId: subscription.id,
      reason,
      details: { voidedInvoices: unserved.map((i) => i.id) },
    });
    return updated!;
  });
}
