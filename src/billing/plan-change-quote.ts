import { eq, sql } from "drizzle-orm";
import { alias } from "drizzle-orm/pg-core";
import type { Executor } from "../db/client.ts";
import { builtOncePerHandle } from "../db/prepared.ts";
import { plans, subscriptions } from "../db/schema/index.ts";
import type { Plan, Subscription } from "./accounts.ts";
import { type BillingContext, BillingError } from "./context.ts";
import { payableAfterCredit, prorationDelta, prorationDeltaRange, prorationDirection } from "./money.ts";
import { periodAt } from "./service-periods.ts";

export interface PlanChangeQuote {
  /** `keep`: the current plan again, while a change waits for the period end: that change is dropped. */
  kind: "upgrade" | "downgrade" | "keep" | "same";
  /** Charged now for the rest of the current period (upgrades); whole shillings (money.ts). */
  chargeCents: number;
  /** Credited now for the rest of the current period (immediate downgrades); whole shillings. */
  creditCents: number;
  /**
   * What the subscriber must pay by M-Pesa now: 0 when their credit covers the charge, else the
   * whole charge (money.ts `payableAfterCredit`), so it is exactly what M-Pesa is asked.
   */
  payableCents: number;
  effectiveAt: Date;
  /**
   * Whether the change is made now. A scheduled change is not, even when its date is past (in the
   * grace days after the period end it comes with the next period's payment): callers tell the
   * subscriber from this, never by comparing dates.
   */
  immediate: boolean;
  /**
   * A scheduled change chosen in the grace days after the period end: it comes with the next
   * period's payment, so it has no date to name.
   */
  withNextPayment: boolean;
  fromPlan: Plan;
  toPlan: Plan;
}

export const toPlans = alias(plans, "to_plan");

/** The subscription, its plan and the plan asked for, read together (the quote also reads the balance). */
export const changeSelection = {
  subscription: subscriptions,
  plan: plans,
  toPlan: toPlans,
};

const quoteQuery = builtOncePerHandle((db) =>
  db
    .select({
      ...changeSelection,
      balance: sql<string>`(select coalesce(sum(l.amount_cents), 0)::text from ledger_entries l where l.customer_id = ${subscriptions.customerId})`,
    })
    .from(subscriptions)
    .innerJoin(plans, eq(plans.id, subscriptions.planId))
    .leftJoin(toPlans, eq(toPlans.id, sql.placeholder("planId")))
    .where(eq(subscriptions.id, sql.placeholder("subscriptionId")))
    .prepare("plan_change_quote"),
);

export function checkChange<T extends { subscription: Subscription; plan: Plan; toPlan: Plan | null }>(
  subscriptionId: number,
  found: T | undefined,
): T & { toPlan: Plan } {
  if (!found) throw new BillingError("unknown_subscription", `No subscription ${subscriptionId}.`);
  const { toPlan } = found;
  if (!toPlan?.active) throw new BillingError("unknown_plan", "That plan does not exist or is retired.");
  if (toPlan.kind !== found.plan.kind) {
    throw new BillingError("wrong_kind", "You can only move to a plan of the same kind.");
  }
  if (found.subscription.status !== "active") {
    throw new BillingError("not_active", "Plans can be changed on an active subscription only.");
  }
  return { ...found, toPlan };
}

/**
 * Periods within a tenth of the longer one's length count as the same: a month is 28 to 31 days, a
 * few free days may be added. Relative, so that a day and three days are not "the same length" as
 * a month and a month and three days are.
 */
const sameLength = (a: number, b: number) => Math.abs(a - b) * 10 <= Math.max(a, b);

/**
 * How the rest of the period is priced: each price spread over its own plan's period (a week's
 * price over a week, a month's over a month), and the time left at an instant.
 */
function proration(ctx: BillingContext, subscription: Subscription, fromPlan: Plan, toPlan: Plan) {
  const start = subscription.currentPeriodStart.getTime();
  const end = subscription.currentPeriodEnd.getTime();
  // A plan whose period is this one's give or take a tenth (months of 28 to 31 days, free days
  // added) is spread over this period itself, so that changes between such plans, and a change
  // undone, net out exactly.
  const lengthOf = (plan: Plan) => {
    const own = periodAt(subscription.currentPeriodStart, plan, 0, ctx.settings);
    const ownMs = own.end.getTime() - own.start.getTime();
    return sameLength(ownMs, end - start) ? end - start : ownMs;
  };
  return {
    // What this period was billed at, not the list price now: an admin may have changed it since.
    fromPriceCents: subscription.periodPriceCents ?? fromPlan.priceCents,
    fromTotalMs: lengthOf(fromPlan),
    toTotalMs: lengthOf(toPlan),
    remainingAt: (at: Date) => Math.max(0, end - Math.max(at.getTime(), start)),
  };
}

export function quoteFrom(
  ctx: BillingContext,
  subscription: Subscription,
  fromPlan: Plan,
  toPlan: Plan,
  balanceCents: number,
  now: Date,
): PlanChangeQuote {
  const { fromPriceCents, fromTotalMs, toTotalMs, remainingAt } = proration(
    ctx,
    subscription,
    fromPlan,
    toPlan,
  );
  const delta = prorationDelta(fromPriceCents, toPlan.priceCents, remainingAt(now), fromTotalMs, toTotalMs);
  if (toPlan.id === fromPlan.id) {
    return {
      kind: subscription.nextPlanId !== null && subscription.nextPlanId !== fromPlan.id ? "keep" : "same",
      chargeCents: 0,
      creditCents: 0,
      payableCents: 0,
      effectiveAt: now,
      immediate: true,
      withNextPayment: false,
      fromPlan,
      toPlan,
    };
  }
  // Upgrade or downgrade by what the rest of the period costs, not by the price per period: a
  // weekly plan cheaper than a monthly one can cost more for the weeks left.
  if (prorationDirection(fromPriceCents, toPlan.priceCents, fromTotalMs, toTotalMs) >= 0) {
    const chargeCents = Math.max(0, delta);
    return {
      kind: "upgrade",
      chargeCents,
      creditCents: 0,
      payableCents: payableAfterCredit(chargeCents, balanceCents),
      effectiveAt: now,
      immediate: true,
      withNextPayment: false,
      fromPlan,
      toPlan,
    };
  }
  if (ctx.settings.downgradeMode === "immediate") {
    return {
      kind: "downgrade",
      chargeCents: 0,
      creditCents: Math.max(0, -delta),
      payableCents: 0,
      effectiveAt: now,
      immediate: true,
      withNextPayment: false,
      fromPlan,
      toPlan,
    };
  }
  return {
    kind: "downgrade",
    chargeCents: 0,
    creditCents: 0,
    payableCents: 0,
    effectiveAt: subscription.currentPeriodEnd,
    immediate: false,
    withNextPayment: subscription.currentPeriodEnd.getTime() <= now.getTime(),
    fromPlan,
    toPlan,
  };
}

/** What a plan change would cost right now; changes nothing. */
export async function quotePlanChange(
  db: Executor,
  ctx: BillingContext,
  input: { subscriptionId: number; planId: number },
): Promise<PlanChangeQuote> {
  // One statement: the menu shows this quote while the subscriber waits.
  const [found] = await quoteQuery(db).execute({
    subscriptionId: input.subscriptionId,
    planId: input.planId,
  });
  const { subscription, plan, toPlan, balance } = checkChange(input.subscriptionId, found);
  return quoteFrom(ctx, subscription, plan, toPlan, Number(balance), ctx.clock.now());
}

/** How long a quote holds: its M-Pesa payment may arrive this long after it was shown. */
export const QUOTE_HOLD_MS = 15 * 60_000;

/**
 * The quote for a change whose M-Pesa payment of `paidCents` has just arrived. The price of the
 * rest of the period moves by the minute while a payment is on its way, and not only down (money.ts
 * `prorationDeltaRange`). An upgrade is charged what was paid when that is a charge some quote of
 * the last QUOTE_HOLD_MS asked, so the subscriber who paid what M-Pesa asked owes nothing more and
 * the "Charged" SMS repeats the quote they accepted; anything else is charged at this moment's
 * quote (and what was paid stays as credit).
 */
export function heldQuote(
  ctx: BillingContext,
  subscription: Subscription,
  fromPlan: Plan,
  toPlan: Plan,
  balanceCents: number,
  paidCents: number | undefined,
  now: Date,
): PlanChangeQuote {
  const quote = quoteFrom(ctx, subscription, fromPlan, toPlan, balanceCents, now);
  if (paidCents === undefined || quote.kind !== "upgrade" || !quote.immediate) return quote;
  const { fromPriceCents, fromTotalMs, toTotalMs, remainingAt } = proration(
    ctx,
    subscription,
    fromPlan,
    toPlan,
  );
  const quoted = prorationDeltaRange(
    fromPriceCents,
    toPlan.priceCents,
    remainingAt(now),
    remainingAt(new Date(now.getTime() - QUOTE_HOLD_MS)),
    fromTotalMs,
    toTotalMs,
  );
  // An upgrade's charge is never below nothing (quoteFrom).
  return Math.max(0, quoted.lowest) <= paidCents && paidCents <= Math.max(0, quoted.highest)
    ? { ...quote, chargeCents: paidCents }
    : quote;
}
