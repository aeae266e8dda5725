import { and, eq, sql } from "drizzle-orm";
import { type Executor, queryRows } from "../db/client.ts";
import { invoiceLines, invoices, subscriptions } from "../db/schema/index.ts";
import type { Plan } from "./accounts.ts";
import type { BillingContext } from "./context.ts";
import { postLedgerEntry } from "./ledger.ts";
import type { MoneyLock } from "./money-lock.ts";
import { periodAt } from "./service-periods.ts";

/** A charge of a plan change: a bill of its own (kind `proration`), due at `dueAt`. */
export async function chargeInvoice(
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
export async function issuedNextPeriod(
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
export async function alignIssuedNextPeriod(
  tx: Executor,
  ctx: BillingContext,
  changed: typeof subscriptions.$inferSelect,
  currentPlan: Plan,
  nextPlan: Plan,
  next: Invoice,
): Promise<void> {
  // As the period will roll (invoicing.ts, recountsSql): counted afresh only for another length.
  const recounts =
    changed.nextPlanId !== null &&
    (nextPlan.periodUnit !== currentPlan.periodUnit || nextPlan.periodCount !== currentPlan.periodCount);
  const periodEnd = recounts
    ? periodAt(changed.currentPeriodEnd, nextPlan, 0, ctx.settings).end
    : periodAt(changed.billingAnchor, nextPlan, changed.periodIndex + 1, ctx.settings).end;
  if (next.periodEnd?.getTime() === periodEnd.getTime()) return;
  await tx.update(invoices).set({ periodEnd }).where(eq(invoices.id, next.id));
}

/**
 * Issued invoices are never edited: a difference is a new charge or a credit. The next period is
 * then billed at `toPlan`'s price, which the subscription keeps for it (`nextPeriodPriceCents`).
 */
export async function repriceIssuedNextPeriod(
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
  await tx
    .update(subscriptions)
    .set({ nextPeriodPriceCents: toPlan.priceCents })
    .where(eq(subscriptions.id, subscription.id));
}
