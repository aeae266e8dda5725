import { eq } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { subscriptions } from "../db/schema/index.ts";
import { audit, requireReason } from "./audit.ts";
import { type Actor, type BillingContext, BillingError } from "./context.ts";
import { restartDunningInTx } from "./dunning.ts";
import { lockedSubscription } from "./money-lock.ts";
import { periodBoundary } from "./periods.ts";
import { restoreIfSettled } from "./restore.ts";
import { movePeriodEnd } from "./service-periods.ts";

/**
 * Free days of service, as an ISP means "extend": the paid-until date (the current period's end)
 * moves `days` later without a charge, the next invoice moving with it (`extendSubscription`). A
 * subscription suspended for non-payment whose unpaid invoice is now not yet due again comes back
 * (`restoreIfSettled`: router restore, "restored" notice), all in one transaction with the audit.
 * Days a suspended subscriber was cut off are not given back: the days count from the old period end.
 */
export function extendService(
  ctx: BillingContext,
  actor: Actor,
  input: { subscriptionId: number; days: number; reason: string },
) {
  return ctx.db.transaction(async (tx) => {
    const inTx: BillingContext = { ...ctx, db: tx as unknown as Db };
    const extended = await extendSubscription(inTx, actor, input);
    const restored =
      extended.status === "suspended" && extended.suspendedReason === "dunning"
        ? await restoreIfSettled(tx, inTx, actor, extended.customerId, ctx.clock.now())
        : [];
    const [after] = await tx.select().from(subscriptions).where(eq(subscriptions.id, extended.id));
    return { subscription: after ?? extended, restored: restored.includes(extended.id) };
  });
}

/**
 * Gives days of service for free (an outage, goodwill): the period ends that many calendar days
 * later and the periods after it count from there, keeping their length. Bills already issued for
 * the next period move with it, and their dunning starts over from the new date.
 */
export async function extendSubscription(
  ctx: BillingContext,
  actor: Actor,
  input: { subscriptionId: number; days: number; reason: string },
) {
  const reason = requireReason(input.reason);
  if (!Number.isInteger(input.days) || input.days < 1 || input.days > 366) {
    throw new BillingError("invalid_days", "Extend by 1 to 366 whole days.");
  }
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const { subscription, plan } = await lockedSubscription(tx, input.subscriptionId);
    if (subscription.status === "cancelled")
      throw new BillingError("cancelled", "That subscription is cancelled.");
    const oldEnd = subscription.currentPeriodEnd;
    // Calendar days from the paid-until date; the periods after it count from the new date (an
    // anchor moved by days and counted in months again could land on the same month end).
    const newEnd = periodBoundary(oldEnd, "days", input.days, 1, ctx.settings.timezone);
    const { updated, movedInvoiceIds } = await movePeriodEnd(tx, subscription, plan, newEnd, ctx.settings);
    await restartDunningInTx(tx, movedInvoiceIds, { moved: true });
    await audit(tx, actor, now, {
      action: "subscription.extended",
      entity: "subscription",
      entityId: subscription.id,
      reason,
      details: { days: input.days, from: oldEnd.toISOString(), to: newEnd.toISOString() },
    });
    return updated;
  });
}
