import { and, eq, sql } from "drizzle-orm";
import type { Executor } from "../db/client.ts";
import { invoices, type PeriodUnit, subscriptions } from "../db/schema/index.ts";
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
