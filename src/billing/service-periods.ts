import { and, eq, sql } from "drizzle-orm";
import type { Executor } from "../db/client.ts";
import { invoices, type PeriodUnit, plans, subscriptions } from "../db/schema/index.ts";
import type { BillingSettings } from "./context.ts";
import { periodBoundary } from "./periods.ts";

interface PeriodPlan {
  periodUnit: PeriodUnit;
  periodCount: number;
}

export function periodAt(anchor: Date, plan: PeriodPlan, index: number, settings: BillingSettings) {
  return {
    start: periodBoundary(anchor, plan.periodUnit, plan.periodCount, index, settings.timezone),
    end: periodBoundary(anchor, plan.periodUnit, plan.periodCount, index + 1, settings.timezone),
  };
}

/**
 * The subscription columns that make the current period end at `end` and count the periods after it
 * from there, whatever decided this one's length (a plan of another length taken now, free days):
 * period -1 of an anchor at `end` is the current one, so the invoice run's next is [end, end + 1).
 */
export const periodsCountedFrom = (end: Date) => ({ billingAnchor: end, periodIndex: -1 });

/**
 * Starts a fresh period at `now` (first activation, or service restored after a suspension that
 * outlived its period): customers pay for time served, never for time they were cut off. The paid
 * invoice that bought this period is moved to cover it.
 */
export async function restartPeriodAt(
  tx: Executor,
  subscription: { id: number; currentPeriodStart: Date },
  plan: PeriodPlan,
  now: Date,
  settings: BillingSettings,
  coveringInvoiceId: number | null,
): Promise<{ start: Date; end: Date }> {
  const period = periodAt(now, plan, 0, settings);
  await tx
    .update(subscriptions)
    .set({
      billingAnchor: now,
      periodIndex: 0,
      currentPeriodStart: period.start,
      currentPeriodEnd: period.end,
      // The period that starts is the one a bill issued ahead was for, if any: its price (not the
      // covering invoice's amount, which may be arrears or leave out a plan change's top-up).
      periodPriceCents: sql`coalesce(${subscriptions.nextPeriodPriceCents}, ${subscriptions.periodPriceCents})`,
      nextPeriodPriceCents: null,
    })
    .where(eq(subscriptions.id, subscription.id));
  if (coveringInvoiceId !== null) {
    await tx
      .update(invoices)
      .set({ periodStart: period.start, periodEnd: period.end })
      .where(and(eq(invoices.id, coveringInvoiceId), eq(invoices.kind, "recurring")));
  }
  return period;
}

/**
 * Moves the end of a subscription's current period to `newEnd` (free days; a resume after a
 * suspension that outlived the period), the periods after it counting from there. The next
 * period's bill moves with it, and so do plan changes' top-ups due when it starts: the ids of those
 * moved, whose dunning the caller starts over.
 */
export async function movePeriodEnd(
  tx: Executor,
  subscription: typeof subscriptions.$inferSelect,
  plan: PeriodPlan,
  newEnd: Date,
  settings: BillingSettings,
): Promise<{ updated: typeof subscriptions.$inferSelect; movedInvoiceIds: number[] }> {
  const oldEnd = subscription.currentPeriodEnd;
  const [updated] = await tx
    .update(subscriptions)
    .set({ ...periodsCountedFrom(newEnd), currentPeriodEnd: newEnd })
    .where(eq(subscriptions.id, subscription.id))
    .returning();
  const [scheduled] = subscription.nextPlanId
    ? await tx.select().from(plans).where(eq(plans.id, subscription.nextPlanId))
    : [];
  const following = periodAt(newEnd, scheduled ?? plan, 0, settings);
  const moved = await tx
    .update(invoices)
    .set({ periodStart: following.start, periodEnd: following.end, dueAt: following.start })
    .where(
      and(
        eq(invoices.subscriptionId, subscription.id),
        eq(invoices.kind, "recurring"),
        eq(invoices.periodStart, oldEnd),
      ),
    )
    .returning({ id: invoices.id });
  const movedTopUps = await tx
    .update(invoices)
    .set({ dueAt: following.start })
    .where(
      and(
        eq(invoices.subscriptionId, subscription.id),
        eq(invoices.kind, "proration"),
        eq(invoices.dueAt, oldEnd),
        sql`${invoices.status} <> 'void'`,
      ),
    )
    .returning({ id: invoices.id });
  return { updated: updated!, movedInvoiceIds: [...moved, ...movedTopUps].map((i) => i.id) };
}
