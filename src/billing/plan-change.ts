import { and, eq, sql } from "drizzle-orm";
import { alias } from "drizzle-orm/pg-core";
import { type Executor, queryRows } from "../db/client.ts";
import { builtOncePerHandle } from "../db/prepared.ts";
import { customers, invoiceLines, invoices, plans, subscriptions } from "../db/schema/index.ts";
import { type Plan, planNameIn, type Subscription } from "./accounts.ts";
import { audit } from "./audit.ts";
import { type Actor, type BillingContext, BillingError } from "./context.ts";
import { balanceOf, oneCustomer, postLedgerEntry, settleOpenInvoices } from "./ledger.ts";
import { payableAfterCredit, prorationDelta } from "./money.ts";
import { lockSubscriptionCustomer, type MoneyLock } from "./money-lock.ts";
import { enqueueMessage, enqueueProvisioning } from "./outbox.ts";
import { periodAt, periodsCountedFrom } from "./service-periods.ts";

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
  fromPlan: Plan;
  toPlan: Plan;
}

const toPlans = alias(plans, "to_plan");

/** The subscription, its plan and the plan asked for, read together (the quote also reads the balance). */
const changeSelection = {
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

function checkChange<T extends { subscription: Subscription; plan: Plan; toPlan: Plan | null }>(
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

/** Periods this close in length count as the same (a month is 28 to 31 days). */
const SAME_LENGTH_WITHIN_MS = 3 * 86_400_000;

function quoteFrom(
  ctx: BillingContext,
  subscription: typeof subscriptions.$inferSelect,
  fromPlan: Plan,
  toPlan: Plan,
  balanceCents: number,
  now: Date,
): PlanChangeQuote {
  const start = subscription.currentPeriodStart.getTime();
  const end = subscription.currentPeriodEnd.getTime();
  const remaining = Math.max(0, end - Math.max(now.getTime(), start));
  // Each price is for its own plan's period: a week's price spread over a week, a month's over a
  // month. A plan whose period is this one's give or take a few days (months of 28 to 31 days,
  // free days added) is spread over this period itself, so that changes between such plans, and a
  // change undone, net out exactly.
  const lengthOf = (plan: Plan) => {
    const own = periodAt(subscription.currentPeriodStart, plan, 0, ctx.settings);
    const ownMs = own.end.getTime() - own.start.getTime();
    return Math.abs(ownMs - (end - start)) <= SAME_LENGTH_WITHIN_MS ? end - start : ownMs;
  };
  const delta = prorationDelta(
    fromPlan.priceCents,
    toPlan.priceCents,
    remaining,
    lengthOf(fromPlan),
    lengthOf(toPlan),
  );
  if (toPlan.id === fromPlan.id) {
    return {
      kind: subscription.nextPlanId !== null && subscription.nextPlanId !== fromPlan.id ? "keep" : "same",
      chargeCents: 0,
      creditCents: 0,
      payableCents: 0,
      effectiveAt: now,
      fromPlan,
      toPlan,
    };
  }
  if (toPlan.priceCents >= fromPlan.priceCents) {
    const chargeCents = Math.max(0, delta);
    return {
      kind: "upgrade",
      chargeCents,
      creditCents: 0,
      payableCents: payableAfterCredit(chargeCents, balanceCents),
      effectiveAt: now,
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
 * The price of the rest of the period shrinks by the minute while a payment is on its way. An
 * upgrade paid by M-Pesa is charged what was paid, so that the "Charged" SMS repeats the quote the
 * subscriber accepted, when that is what a quote of the last QUOTE_HOLD_MS asked; anything else is
 * charged at this moment's quote (and what was paid stays as credit).
 */
function heldQuote(
  quote: PlanChangeQuote,
  paidCents: number | undefined,
  quoteAt: (at: Date) => PlanChangeQuote,
  now: Date,
): PlanChangeQuote {
  if (paidCents === undefined || quote.kind !== "upgrade" || quote.effectiveAt.getTime() !== now.getTime())
    return quote;
  const earliest = quoteAt(new Date(now.getTime() - QUOTE_HOLD_MS)).chargeCents;
  return quote.chargeCents <= paidCents && paidCents <= earliest
    ? { ...quote, chargeCents: paidCents }
    : quote;
}

/**
 * Changes plan: an upgrade takes effect now and charges the price difference for the rest of the
 * period; a downgrade waits for the period end (or, when configured, takes effect now with a
 * prorated credit). An invoice already issued for the next period is topped up or credited so the
 * next period is billed at the new price. `paidCents`: what M-Pesa took for this change (see
 * `heldQuote`).
 */
export async function changePlanInTx(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  input: { subscriptionId: number; planId: number; paidCents?: number },
): Promise<PlanChangeQuote> {
  const now = ctx.clock.now();
  const money = await lockSubscriptionCustomer(tx, input.subscriptionId);
  const [locked] = await tx
    .select(changeSelection)
    .from(subscriptions)
    .innerJoin(plans, eq(plans.id, subscriptions.planId))
    .leftJoin(toPlans, eq(toPlans.id, input.planId))
    .where(eq(subscriptions.id, input.subscriptionId))
    .for("update", { of: subscriptions });
  const { subscription, plan, toPlan } = checkChange(input.subscriptionId, locked);
  // Read after the locks, in a statement of its own, so a payment that committed meanwhile counts.
  const balance = await balanceOf(tx, subscription.customerId);
  const quoteAt = (at: Date) => quoteFrom(ctx, subscription, plan, toPlan, balance, at);
  const quote = heldQuote(quoteAt(now), input.paidCents, quoteAt, now);
  if (quote.kind === "same") throw new BillingError("same_plan", "You are already on that plan.");
  const customerId = subscription.customerId;
  const immediate = quote.effectiveAt.getTime() === now.getTime();

  if (quote.chargeCents > 0) {
    await chargeInvoice(tx, money, {
      customerId,
      subscriptionId: subscription.id,
      amountCents: quote.chargeCents,
      description: `Upgrade to ${toPlan.name} for the rest of the period`,
      dueAt: now,
      now,
    });
  }
  if (quote.creditCents > 0) {
    await postLedgerEntry(tx, money, {
      customerId,
      kind: "credit",
      amountCents: quote.creditCents,
      memo: `Unused ${plan.name} after moving to ${toPlan.name}`,
      at: now,
    });
  }
  const next = await issuedNextPeriod(tx, subscription);
  if (next) await repriceIssuedNextPeriod(tx, money, subscription, next, toPlan, now);

  // A plan of another period length taken now runs to the end of the period already paid for, and
  // counts its own periods from there (a scheduled change does the same when the period rolls).
  const recount =
    immediate && (toPlan.periodUnit !== plan.periodUnit || toPlan.periodCount !== plan.periodCount);
  const [changed] = await tx
    .update(subscriptions)
    .set(
      immediate
        ? {
            planId: toPlan.id,
            nextPlanId: null,
            ...(recount ? periodsCountedFrom(subscription.currentPeriodEnd) : {}),
          }
        : { nextPlanId: toPlan.id },
    )
    .where(eq(subscriptions.id, subscription.id))
    .returning();
  if (next) await alignIssuedNextPeriod(tx, ctx, changed!, toPlan, next);
  // The charge is due now, so it is paid before the next period's bill issued ahead, even with
  // money that bill already held (the very payment asked for this change, credited first).
  await settleOpenInvoices(tx, money, now, oneCustomer(customerId));

  const [customer] = await tx.select().from(customers).where(eq(customers.id, customerId));
  if (immediate) {
    await enqueueProvisioning(tx, now, {
      action: "change_plan",
      subscriptionId: subscription.id,
      routerId: subscription.routerId,
    });
  }
  if (customer) {
    const planName = planNameIn(toPlan, customer.language);
    await enqueueMessage(tx, now, {
      recipient: customer.phone,
      language: customer.language,
      ...(!immediate
        ? {
            template: "plan_change_scheduled",
            // In the grace days after the period end the change comes with the next period's
            // payment: "from today", not a date already past.
            params: {
              plan: planName,
              effectiveAt: new Date(Math.max(quote.effectiveAt.getTime(), now.getTime())).toISOString(),
            },
          }
        : quote.creditCents > 0
          ? { template: "plan_changed_credit", params: { plan: planName, creditCents: quote.creditCents } }
          : quote.kind === "keep"
            ? { template: "plan_change_dropped", params: { plan: planName } }
            : { template: "plan_changed", params: { plan: planName, chargeCents: quote.chargeCents } }),
    });
  }
  await audit(tx, actor, now, {
    action:
      quote.kind === "keep"
        ? "subscription.plan_change_dropped"
        : immediate
          ? "subscription.plan_changed"
          : "subscription.plan_change_scheduled",
    entity: "subscription",
    entityId: subscription.id,
    details: {
      from: plan.code,
      to: toPlan.code,
      chargeCents: quote.chargeCents,
      creditCents: quote.creditCents,
      effectiveAt: quote.effectiveAt.toISOString(),
    },
  });
  return quote;
}

export function changePlan(
  ctx: BillingContext,
  actor: Actor,
  input: { subscriptionId: number; planId: number; paidCents?: number },
): Promise<PlanChangeQuote> {
  return ctx.db.transaction((tx) => changePlanInTx(tx, ctx, actor, input));
}

async function chargeInvoice(
  tx: Executor,
  money: MoneyLock,
  input: {
    customerId: number;
    subscriptionId: number;
    amountCents: number;
    description: string;
    dueAt: Date;
    now: Date;
  },
): Promise<void> {
  const [invoice] = await tx
    .insert(invoices)
    .values({
      customerId: input.customerId,
      subscriptionId: input.subscriptionId,
      kind: "proration",
      amountCents: input.amountCents,
      dueAt: input.dueAt,
      issuedAt: input.now,
    })
    .returning();
  await tx
    .insert(invoiceLines)
    .values({ invoiceId: invoice!.id, description: input.description, amountCents: input.amountCents });
  await postLedgerEntry(tx, money, {
    customerId: input.customerId,
    kind: "invoice",
    amountCents: -input.amountCents,
    invoiceId: invoice!.id,
    memo: input.description,
    at: input.now,
  });
}

type Invoice = typeof invoices.$inferSelect;

/** The invoice issued ahead for the period after the current one, if any and not voided. */
async function issuedNextPeriod(
  tx: Executor,
  subscription: typeof subscriptions.$inferSelect,
): Promise<Invoice | null> {
  const [next] = await tx
    .select()
    .from(invoices)
    .where(
      and(
        eq(invoices.subscriptionId, subscription.id),
        eq(invoices.kind, "recurring"),
        eq(invoices.periodStart, subscription.currentPeriodEnd),
      ),
    );
  return next && next.status !== "void" ? next : null;
}

/**
 * What the next period is billed at so far: its invoice, plus the top-ups and less the credits of
 * earlier plan changes (due when it starts, or posted on it), and the plan that price was for.
 */
async function nextPeriodBilling(
  tx: Executor,
  subscription: typeof subscriptions.$inferSelect,
  next: Invoice,
): Promise<{ billedCents: number; planName: string }> {
  const [row] = await queryRows<{ topups: string; credits: string; plan_name: string }>(
    tx,
    sql`select
          (select coalesce(sum(i.amount_cents), 0) from invoices i
            where i.subscription_id = ${subscription.id} and i.kind = 'proration' and i.status <> 'void'
              and i.due_at = ${next.dueAt.toISOString()}::timestamptz)::text as topups,
          (select coalesce(sum(l.amount_cents), 0) from ledger_entries l
            where l.invoice_id = ${next.id} and l.kind = 'credit')::text as credits,
          (select p.name from plans p where p.id = ${subscription.nextPlanId ?? subscription.planId}) as plan_name`,
  );
  return {
    billedCents: next.amountCents + Number(row!.topups) - Number(row!.credits),
    planName: row!.plan_name,
  };
}

/**
 * The next period's invoice names the period it pays for: when the plan that period is on has
 * another length, its end moves to where the invoice run will end that period.
 */
async function alignIssuedNextPeriod(
  tx: Executor,
  ctx: BillingContext,
  changed: typeof subscriptions.$inferSelect,
  nextPlan: Plan,
  next: Invoice,
): Promise<void> {
  const periodEnd =
    changed.nextPlanId !== null
      ? periodAt(changed.currentPeriodEnd, nextPlan, 0, ctx.settings).end
      : periodAt(changed.billingAnchor, nextPlan, changed.periodIndex + 1, ctx.settings).end;
  if (next.periodEnd?.getTime() === periodEnd.getTime()) return;
  await tx.update(invoices).set({ periodEnd }).where(eq(invoices.id, next.id));
}

/** Issued invoices are never edited: a difference is a new charge or a credit. */ /** Issued invoices are never edited: a difference is a new charge or a credit. */
async function repriceIssuedNextPeriod(
  tx: Executor,
  money: MoneyLock,
  subscription: typeof subscriptions.$inferSelect,
  next: Invoice,
  toPlan: Plan,
  now: Date,
): Promise<void> {
  const billing = await nextPeriodBilling(tx, subscription, next);
  const difference = toPlan.priceCents - billing.billedCents;
  const description = `Next period at ${toPlan.name} instead of ${billing.planName}`;
  if (difference > 0) {
    await chargeInvoice(tx, money, {
      customerId: subscription.customerId,
      subscriptionId: subscription.id,
      amountCents: difference,
      description,
      dueAt: next.dueAt,
      now,
    });
  } else if (difference < 0) {
    await postLedgerEntry(tx, money, {
      customerId: subscription.customerId,
      kind: "credit",
      amountCents: -difference,
      invoiceId: next.id,
      memo: description,
      at: now,
    });
  }
}
