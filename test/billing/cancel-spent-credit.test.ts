import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cancelSubscription } from "../../src/billing/cancel-subscription.ts";
import { sendReminders, suspendOverdue } from "../../src/billing/dunning.ts";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { changePlan } from "../../src/billing/plan-change.ts";
import { DAY, FakeClock, HOUR } from "../../src/clock.ts";
import { invoices, messageOutbox, subscriptions } from "../../src/db/schema/index.ts";
import {
  activeSubscriber,
  admin,
  anotherSubscription,
  billingContext,
  createPlan,
  job,
  ledgerSum,
} from "../support/billing.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

/**
 * A customer with two subscriptions. One's next period, issued and not paid, is repriced by a
 * scheduled downgrade: the difference is credit, which pays the other subscription's bill due
 * first. The downgraded subscription is then cancelled before its next period starts: that bill is
 * voided and its credit taken back. The credit was spent, so what it paid is owed again: the bills
 * must show what the balance says is owed, or dunning never asks for it (and a payment of what the
 * bills ask leaves them unpaid). Whether that bill has fallen due meanwhile makes no difference.
 */

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.close();
});

let seq = 0;

/**
 * Subscription B (KES 1,000 a month) starts at `start`, A (KES 2,000) `later` after it, each paid
 * in cash for its first period: B's bills fall due `later` before A's.
 */
async function twoSubscriptions(start: string, later: number) {
  const { ctx, clock } = billingContext(database.db, new FakeClock(start));
  const basic = await createPlan(database.db, { priceCents: 100_000, periodUnit: "days", periodCount: 30 });
  const fast = await createPlan(database.db, { priceCents: 200_000, periodUnit: "days", periodCount: 30 });
  const { customer, subscription: b } = await activeSubscriber(ctx, basic.id);
  clock.advance(later);
  const a = await anotherSubscription(ctx, customer.id, fast, `a-${customer.id}`);
  await pay(ctx, customer.id, fast.priceCents);
  return { ctx, clock, basic, customer, a, b };
}

function pay(ctx: ReturnType<typeof billingContext>["ctx"], customerId: number, amountCents: number) {
  seq++;
  return applyPayment(ctx, admin, {
    customerId,
    method: "cash",
    provider: "cash",
    providerRef: `spent-credit-${customerId}-${seq}`,
    amountCents,
  });
}

async function subscriptionOf(id: number) {
  const [row] = await database.db.select().from(subscriptions).where(eq(subscriptions.id, id));
  return row!;
}

/** The reminders texted to `phone`, oldest first. */
async function remindersTo(phone: string) {
  const rows = await database.db
    .select()
    .from(messageOutbox)
    .where(and(eq(messageOutbox.recipient, phone), eq(messageOutbox.template, "invoice_reminder")))
    .orderBy(messageOutbox.id);
  return rows.map((m) => m.params);
}

/** What each open bill of the customer's still asks for. */
async function openBills(customerId: number) {
  return (await database.db.select().from(invoices).where(eq(invoices.customerId, customerId)))
    .filter((i) => i.status === "open")
    .map((i) => ({ subscriptionId: i.subscriptionId, outstanding: i.amountCents - i.paidCents }));
}

describe("a downgrade's credit spent on another bill, then the downgraded subscription cancelled", () => {
  it("the bill the credit paid is owed again: open bills add up to what the balance owes", async () => {
    const { ctx, clock, basic, customer, a, b } = await twoSubscriptions("2026-05-01T00:00:00Z", DAY);
    clock.advance(27 * DAY);
    await issueRecurringInvoices(ctx, job);
    await changePlan(ctx, admin, { subscriptionId: a.id, planId: basic.id });
    await cancelSubscription(ctx, admin, { subscriptionId: a.id, reason: "moving away" });

    const owed = -(await ledgerSum(database.db, customer.id));
    // B's next period (KES 1,000) is unpaid: nothing was paid towards it.
    expect(owed).toBe(100_000);
    expect(await openBills(customer.id)).toEqual([{ subscriptionId: b.id, outstanding: owed }]);
  });

  it("a bill the credit paid that has fallen due since is owed again: reminded, then suspended after a grace period", async () => {
    const { ctx, clock, basic, customer, a, b } = await twoSubscriptions("2026-07-01T00:00:00Z", DAY);
    clock.advance(27 * DAY);
    await issueRecurringInvoices(ctx, job);
    // The downgrade's KES 1,000 credit pays B's next period in full.
    await changePlan(ctx, admin, { subscriptionId: a.id, planId: basic.id });
    // B's next period starts, paid: it rolls. A's has not started yet.
    const cancelledAt = new Date(b.currentPeriodEnd.getTime() + 12 * HOUR);
    clock.set(cancelledAt);
    await issueRecurringInvoices(ctx, job);
    expect((await subscriptionOf(b.id)).currentPeriodStart).toEqual(b.currentPeriodEnd);
    await cancelSubscription(ctx, admin, { subscriptionId: a.id, reason: "moving away" });

    const owed = -(await ledgerSum(database.db, customer.id));
    expect(owed).toBe(100_000);
    expect(await openBills(customer.id)).toEqual([{ subscriptionId: b.id, outstanding: owed }]);

    await sendReminders(ctx, job);
    expect(await remindersTo(customer.phone)).toEqual([expect.objectContaining({ amountCents: owed })]);
    // A grace period from when the bill was owed again, not from its due date (past already).
    clock.set(new Date(cancelledAt.getTime() + DAY - HOUR));
    await suspendOverdue(ctx, job);
    expect((await subscriptionOf(b.id)).status).toBe("active");
    clock.set(new Date(cancelledAt.getTime() + DAY + HOUR));
    await suspendOverdue(ctx, job);
    expect((await subscriptionOf(b.id)).status).toBe("suspended");

    // Paying what the bill asks settles it, and brings B back; nothing is charged twice.
    await pay(ctx, customer.id, owed);
    expect(await openBills(customer.id)).toEqual([]);
    expect(await ledgerSum(database.db, customer.id)).toBe(0);
    expect((await subscriptionOf(b.id)).status).toBe("active");
  });

  it("a bill reminded about before the credit paid it is reminded about again once owed again", async () => {
    const { ctx, clock, basic, customer, a, b } = await twoSubscriptions("2027-03-01T00:00:00Z", DAY);
    // B's renewal, issued ahead, is reminded about while it is open.
    clock.set(new Date(b.currentPeriodEnd.getTime() - 3 * DAY));
    await issueRecurringInvoices(ctx, job);
    await sendReminders(ctx, job);
    clock.set(new Date(b.currentPeriodEnd.getTime() + HOUR));
    await sendReminders(ctx, job);
    // The downgrade's credit pays it; B's period rolls; A is cancelled and the credit taken back.
    await changePlan(ctx, admin, { subscriptionId: a.id, planId: basic.id });
    clock.set(new Date(b.currentPeriodEnd.getTime() + 12 * HOUR));
    await issueRecurringInvoices(ctx, job);
    const before = await remindersTo(customer.phone);
    expect(before).toHaveLength(2);
    await cancelSubscription(ctx, admin, { subscriptionId: a.id, reason: "moving away" });

    const owed = -(await ledgerSum(database.db, customer.id));
    expect(owed).toBe(100_000);
    await sendReminders(ctx, job);
    expect((await remindersTo(customer.phone)).slice(before.length)).toEqual([
      expect.objectContaining({ amountCents: owed }),
    ]);
    // Told once: the next run sends nothing more.
    await sendReminders(ctx, job);
    expect(await remindersTo(customer.phone)).toHaveLength(before.length + 1);
  });

  it("a bill suspended for before the credit paid it can suspend again once owed again", async () => {
    // B's bills fall due two days before A's: B is cut off for its renewal before A's next period.
    const { ctx, clock, basic, customer, a, b } = await twoSubscriptions("2026-09-01T00:00:00Z", 2 * DAY);
    clock.set(new Date(b.currentPeriodEnd.getTime() - 2 * DAY));
    await issueRecurringInvoices(ctx, job);
    clock.set(new Date(b.currentPeriodEnd.getTime() + DAY + 6 * HOUR));
    await issueRecurringInvoices(ctx, job);
    await suspendOverdue(ctx, job);
    expect((await subscriptionOf(b.id)).status).toBe("suspended");
    // The downgrade's credit pays B's renewal; a payment towards A's next period brings B back.
    await changePlan(ctx, admin, { subscriptionId: a.id, planId: basic.id });
    await pay(ctx, customer.id, 50_000);
    expect((await subscriptionOf(b.id)).status).toBe("active");

    await cancelSubscription(ctx, admin, { subscriptionId: a.id, reason: "moving away" });
    const owed = -(await ledgerSum(database.db, customer.id));
    expect(owed).toBe(50_000);
    expect(await openBills(customer.id)).toEqual([{ subscriptionId: b.id, outstanding: owed }]);
    clock.advance(DAY + HOUR);
    await suspendOverdue(ctx, job);
    expect((await subscriptionOf(b.id)).status).toBe("suspended");
  });
});

describe("a plan change's credit that settles a suspended subscription's bill", () => {
  /** B cut off for its unpaid renewal, A's next period issued ahead and unpaid (see twoSubscriptions). */
  async function bSuspended(start: string) {
    const setup = await twoSubscriptions(start, 2 * DAY);
    const { clock, b } = setup;
    clock.set(new Date(b.currentPeriodEnd.getTime() - 2 * DAY));
    await issueRecurringInvoices(setup.ctx, job);
    clock.set(new Date(b.currentPeriodEnd.getTime() + DAY + 6 * HOUR));
    await issueRecurringInvoices(setup.ctx, job);
    await suspendOverdue(setup.ctx, job);
    expect((await subscriptionOf(b.id)).status).toBe("suspended");
    return setup;
  }

  it("a downgrade's credit that pays the overdue bill brings the subscription back at once", async () => {
    const { ctx, basic, customer, a, b } = await bSuspended("2026-11-01T00:00:00Z");
    await changePlan(ctx, admin, { subscriptionId: a.id, planId: basic.id });

    // The credit paid B's renewal; A's next period, repriced by a credit beside its bill, waits.
    expect(await openBills(customer.id)).toEqual([{ subscriptionId: a.id, outstanding: 200_000 }]);
    expect((await subscriptionOf(b.id)).status).toBe("active");
    const notices = await database.db
      .select()
      .from(messageOutbox)
      .where(and(eq(messageOutbox.recipient, customer.phone), eq(messageOutbox.template, "restored")));
    expect(notices).toHaveLength(1);
  });
});
