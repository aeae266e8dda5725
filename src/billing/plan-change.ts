import { eq } from "drizzle-orm";
import type { Executor } from "../db/client.ts";
import { customers, plans, subscriptions } from "../db/schema/index.ts";
import { planNameIn } from "./accounts.ts";
import { audit } from "./audit.ts";
import { type Actor, type BillingContext, BillingError } from "./context.ts";
import { balanceOf, oneCustomer, postLedgerEntry, settleOpenInvoices } from "./ledger.ts";
import { lockSubscriptionCustomer } from "./money-lock.ts";
import { enqueueMessage, enqueueProvisioning } from "./outbox.ts";
import {
  alignIssuedNextPeriod,
  chargeInvoice,
  issuedNextPeriod,
  repriceIssuedNextPeriod,
} from "./plan-change-bills.ts";
import {
  changeSelection,
  checkChange,
  heldQuote,
  type PlanChangeQuote,
  toPlans,
} from "./plan-change-quote.ts";
import { restoreIfSettled } from "./restore.ts";
import { periodsCountedFrom } from "./service-periods.ts";

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
  const quote = heldQuote(ctx, subscription, plan, toPlan, balance, input.paidCents, now);
  if (quote.kind === "same") throw new BillingError("same_plan", "You are already on that plan.");
  const customerId = subscription.customerId;
  const { immediate } = quote;

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
            // The rest of the period was priced at this price (the quote above): a later change
            // values what is left of it at the same.
            ...(toPlan.id !== plan.id ? { periodPriceCents: toPlan.priceCents } : {}),
            ...(recount ? periodsCountedFrom(subscription.currentPeriodEnd) : {}),
          }
        : { nextPlanId: toPlan.id },
    )
    .where(eq(subscriptions.id, subscription.id))
    .returning();
  if (next) await alignIssuedNextPeriod(tx, ctx, changed!, immediate ? toPlan : plan, toPlan, next);
  // The charge is due now, so it is paid before the next period's bill issued ahead, even with
  // money that bill already held (the very payment asked for this change, credited first).
  await settleOpenInvoices(tx, money, now, oneCustomer(customerId));
  // A downgrade's credit can pay what another of the customer's subscriptions was cut off for: that
  // one comes back now, as it would for a payment, not with the next payment to arrive.
  await restoreIfSettled(tx, ctx, actor, customerId, now);

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
      ...(quote.withNextPayment
        ? { template: "plan_change_next_payment", params: { plan: planName } }
        : !immediate
          ? {
              template: "plan_change_scheduled",
              params: { plan: planName, effectiveAt: quote.effectiveAt.toISOString() },
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
