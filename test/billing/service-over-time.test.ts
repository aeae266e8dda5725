import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { planNameIn } from "../../src/billing/accounts.ts";
import { cancelSubscription } from "../../src/billing/cancel-subscription.ts";
import { sendReminders, suspendOverdue } from "../../src/billing/dunning.ts";
import { extendService } from "../../src/billing/extend.ts";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { changePlan } from "../../src/billing/plan-change.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { resumeSubscription, suspendSubscription } from "../../src/billing/suspend-resume.ts";
import { DAY, FakeClock, HOUR } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { invoices, messageOutbox, subscriptions } from "../../src/db/schema/index.ts";
import {
  activeSubscriber,
  admin,
  billingContext,
  createPlan,
  job,
  ledgerSum,
  uniquePhone,
} from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";

/** Free days, an admin's resume, a scheduled change: service over time stays what was paid for. */

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

const sub = async (id: number) =>
  (await database.db.select().from(subscriptions).where(eq(subscriptions.id, id)))[0]!;
const cash = (
  ctx: ReturnType<typeof billingContext>["ctx"],
  customerId: number,
  cents: number,
  ref: string,
) =>
  applyPayment(ctx, admin, {
    customerId,
    method: "cash",
    provider: "cash",
    providerRef: ref,
    amountCents: cents,
  });

/** A subscriber on a KES 2,000 plan whose next bill was issued three days before it falls due (`due`). */
async function renewalIssued(start: string) {
  const { ctx, clock } = billingContext(database.db, new FakeClock(start));
  const plan = await createPlan(database.db, { priceCents: 200_000 });
  const { customer, subscription } = await activeSubscriber(ctx, plan.id);
  const due = subscription.currentPeriodEnd.getTime();
  clock.set(new Date(due - 3 * DAY));
  await issueRecurringInvoices(ctx, job);
  return { ctx, clock, customer, subscription, due };
}

/** A subscriber whose next bill was issued and not paid, suspended a grace day after it fell due. */
async function suspendedForNonPayment(start: string) {
  const issued = await renewalIssued(start);
  issued.clock.set(new Date(issued.due + DAY + HOUR));
  expect((await suspendOverdue(issued.ctx, job)).suspended).toBe(1);
  return issued;
}

describe("service over time", () => {
  it("a subscription not started yet cannot be suspended (a resume would skip its activation)", async () => {
    const { ctx } = billingContext(database.db, new FakeClock("2026-11-01T08:00:00Z"));
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { subscription } = await createCustomerWithSubscription(ctx, admin, {
      name: "Not Started",
      phone: uniquePhone(),
      planId: plan.id,
    });
    await expect(
      suspendSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "test" }),
    ).rejects.toMatchObject({ code: "pending" });
    expect((await sub(subscription.id)).status).toBe("pending");
  });

  it("cancelling a subscriber cut off for non-payment leaves nothing owed for the renewal never served", async () => {
    const { ctx, clock, customer, subscription } = await suspendedForNonPayment("2026-11-10T08:00:00Z");
    expect(await ledgerSum(database.db, customer.id)).toBe(-200_000);
    clock.advance(5 * DAY);
    await cancelSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "moved away" });
    expect(await ledgerSum(database.db, customer.id)).toBe(0);
    const bills = await database.db
      .select()
      .from(invoices)
      .where(eq(invoices.subscriptionId, subscription.id));
    expect(bills.filter((i) => i.status === "open")).toEqual([]);
  });

  it("cancelling in the grace hours after the period ended, the renewal unpaid, leaves nothing owed for it", async () => {
    const { ctx, clock, customer, subscription, due } = await renewalIssued("2026-11-12T08:00:00Z");
    clock.set(new Date(due + 12 * HOUR));
    expect((await suspendOverdue(ctx, job)).suspended).toBe(0);
    await cancelSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "not renewing" });
    expect(await ledgerSum(database.db, customer.id)).toBe(0);
  });

  it("cancelling after the period ended with the renewal paid keeps the renewal being served", async () => {
    const { ctx, clock, customer, subscription, due } = await renewalIssued("2026-11-12T08:00:00Z");
    await cash(ctx, customer.id, 200_000, `renewal-${customer.id}`);
    // Before the invoice run rolls the period on: the paid month has started all the same.
    clock.set(new Date(due + 2 * HOUR));
    await cancelSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "moving away" });
    expect(await ledgerSum(database.db, customer.id)).toBe(0);
    const bills = await database.db
      .select()
      .from(invoices)
      .where(eq(invoices.subscriptionId, subscription.id));
    expect(bills.filter((i) => i.status === "void")).toEqual([]);
  });

  it("cancelling after an admin's suspension over dunning's leaves nothing owed for the renewal never served", async () => {
    const { ctx, clock, customer, subscription } = await suspendedForNonPayment("2026-11-10T08:00:00Z");
    await suspendSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "abuse report" });
    clock.advance(5 * DAY);
    await cancelSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "moved away" });
    expect(await ledgerSum(database.db, customer.id)).toBe(0);
  });

  it("cancelling a subscriber cut off for non-payment voids an upgrade's top-up for the renewal too", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-08-01T08:00:00Z"));
    const basic = await createPlan(database.db, { priceCents: 100_000 });
    const premium = await createPlan(database.db, { priceCents: 200_000 });
    const { customer, subscription } = await activeSubscriber(ctx, basic.id);
    const end = subscription.currentPeriodEnd.getTime();
    clock.set(new Date(end - 2 * DAY));
    await issueRecurringInvoices(ctx, job);
    await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: premium.id });
    const bills = await database.db
      .select()
      .from(invoices)
      .where(eq(invoices.subscriptionId, subscription.id));
    // The upgrade for the days left is paid; the next period's top-up (due when it starts) is not.
    const upNow = bills.find((i) => i.kind === "proration" && i.dueAt.getTime() < end)!;
    expect(bills.some((i) => i.kind === "proration" && i.dueAt.getTime() === end)).toBe(true);
    await cash(ctx, customer.id, upNow.amountCents, `up-${customer.id}`);
    clock.set(new Date(end + DAY + HOUR));
    expect((await suspendOverdue(ctx, job)).suspended).toBe(1);
    clock.advance(5 * DAY);
    await cancelSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "moved away" });
    const after = await database.db
      .select()
      .from(invoices)
      .where(eq(invoices.subscriptionId, subscription.id));
    expect(after.filter((i) => i.status === "open")).toEqual([]);
    expect(await ledgerSum(database.db, customer.id)).toBe(0);
  });

  it("free days given to a suspended subscriber bring service back; still unpaid after them, it is suspended again", async () => {
    const { ctx, clock, subscription, due } = await suspendedForNonPayment("2026-06-01T08:00:00Z");
    const extended = await extendService(ctx, admin, {
      subscriptionId: subscription.id,
      days: 5,
      reason: "outage",
    });
    expect(extended.restored).toBe(true);

    clock.set(new Date(due + 5 * DAY - HOUR));
    expect((await sendReminders(ctx, job)).reminded).toBe(1); // the moved bill's reminders start over
    expect((await suspendOverdue(ctx, job)).suspended).toBe(0);
    clock.set(new Date(due + 6 * DAY + 2 * HOUR));
    expect((await suspendOverdue(ctx, job)).suspended).toBe(1);
    expect((await sub(subscription.id)).status).toBe("suspended");
  });

  it("an admin's resume of an unpaid subscriber holds for a grace period, then dunning suspends again", async () => {
    const { ctx, clock, customer, subscription } = await suspendedForNonPayment("2026-07-01T08:00:00Z");
    clock.advance(2 * DAY);
    await resumeSubscription(ctx, admin, {
      subscriptionId: subscription.id,
      reason: "promised to pay Friday",
    });
    clock.advance(HOUR);
    expect((await suspendOverdue(ctx, job)).suspended).toBe(0);
    expect((await sub(subscription.id)).status).toBe("active");

    clock.advance(DAY);
    expect((await suspendOverdue(ctx, job)).suspended).toBe(1);
    const notices = await database.db
      .select()
      .from(messageOutbox)
      .where(and(eq(messageOutbox.recipient, customer.phone), eq(messageOutbox.template, "suspended")));
    expect(notices).toHaveLength(2);
  });

  it("an admin's suspension over dunning's, then a resume, still leaves the unpaid bill enforced", async () => {
    const { ctx, clock, subscription } = await suspendedForNonPayment("2026-07-20T08:00:00Z");
    await suspendSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "abuse report" });
    clock.advance(DAY);
    await resumeSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "sorted out" });
    clock.advance(2 * DAY);
    await suspendOverdue(ctx, job);
    expect((await sub(subscription.id)).status).toBe("suspended");
  });

  it("free days after an admin's resume count from the resume, and the grace day after them", async () => {
    const { ctx, clock, subscription, due } = await suspendedForNonPayment("2026-06-10T08:00:00Z");
    clock.set(new Date(due + 10 * DAY));
    await resumeSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "promised to pay" });
    await extendService(ctx, admin, { subscriptionId: subscription.id, days: 2, reason: "outage" });
    clock.advance(2 * HOUR);
    expect((await suspendOverdue(ctx, job)).suspended).toBe(0);
    clock.advance(2 * DAY);
    expect((await suspendOverdue(ctx, job)).suspended).toBe(0);
    clock.advance(DAY);
    expect((await suspendOverdue(ctx, job)).suspended).toBe(1);
  });

  it("an admin's suspension that outlived the period: after the resume the next period starts with the service", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-09-01T08:00:00Z"));
    const plan = await createPlan(database.db, { priceCents: 300_000 });
    const { customer, subscription } = await activeSubscriber(ctx, plan.id);
    const end = subscription.currentPeriodEnd.getTime();
    clock.set(new Date(end - 20 * DAY));
    await suspendSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "customer travelling" });
    clock.set(new Date(end + 19 * DAY));
    await issueRecurringInvoices(ctx, job);
    await resumeSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "back home" });
    const resumedAt = clock.now();
    await issueRecurringInvoices(ctx, job);
    const [renewal] = await database.db
      .select()
      .from(invoices)
      .where(and(eq(invoices.subscriptionId, subscription.id), eq(invoices.periodStart, resumedAt)));
    expect(renewal).toMatchObject({ kind: "recurring", dueAt: resumedAt, amountCents: 300_000 });
    await cash(ctx, customer.id, 300_000, `back-${customer.id}`);
    await issueRecurringInvoices(ctx, job);
    const served = await sub(subscription.id);
    expect(served.currentPeriodStart).toEqual(resumedAt);
    expect(served.currentPeriodEnd).toEqual(renewal!.periodEnd);
  });

  it("cut off by dunning, resumed by an admin, then paid: the paid month starts at the resume", async () => {
    const { ctx, clock, customer, subscription, due } = await suspendedForNonPayment("2026-06-15T08:00:00Z");
    clock.set(new Date(due + 10 * DAY));
    await resumeSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "promised to pay" });
    const resumedAt = clock.now();
    clock.advance(12 * HOUR);
    await cash(ctx, customer.id, 200_000, `p-${customer.id}`);
    await issueRecurringInvoices(ctx, job);
    const served = await sub(subscription.id);
    expect(served.status).toBe("active");
    expect(served.currentPeriodStart).toEqual(resumedAt);
    expect(served.currentPeriodEnd.getTime()).toBeGreaterThan(resumedAt.getTime() + 29 * DAY);
  });

  it("a bill moved by free days is reminded again, by SMS, for its new due date", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-07-10T08:00:00Z"));
    const plan = await createPlan(database.db, { priceCents: 200_000 });
    const { customer, subscription } = await activeSubscriber(ctx, plan.id);
    const due = subscription.currentPeriodEnd.getTime();
    clock.set(new Date(due - 4 * DAY));
    await issueRecurringInvoices(ctx, job);
    for (const at of [due - 3 * DAY + HOUR, due - DAY + HOUR, due + HOUR]) {
      clock.set(new Date(at));
      await sendReminders(ctx, job);
    }
    const reminders = () =>
      database.db
        .select()
        .from(messageOutbox)
        .where(
          and(eq(messageOutbox.recipient, customer.phone), eq(messageOutbox.template, "invoice_reminder")),
        );
    expect(await reminders()).toHaveLength(3);

    await extendService(ctx, admin, { subscriptionId: subscription.id, days: 10, reason: "outage" });
    clock.set(new Date(due + 9 * DAY + HOUR));
    expect((await sendReminders(ctx, job)).reminded).toBe(1);
    expect(await reminders()).toHaveLength(4);
  });

  it("a subscriber suspended for an unpaid plan-change charge, paying all they owe after the period end, is back", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-10-01T08:00:00Z"));
    const basic = await createPlan(database.db, { priceCents: 100_000 });
    const premium = await createPlan(database.db, { priceCents: 200_000 });
    const { customer, subscription } = await activeSubscriber(ctx, basic.id);
    const end = subscription.currentPeriodEnd.getTime();
    // Upgraded mid-period, the charge unpaid: suspended before the renewal bill was issued.
    clock.set(new Date(end - 20 * DAY));
    await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: premium.id });
    clock.set(new Date(end - 18 * DAY));
    await suspendOverdue(ctx, job);
    expect((await sub(subscription.id)).status).toBe("suspended");
    clock.set(new Date(end + 2 * DAY));
    await issueRecurringInvoices(ctx, job);
    // The renewal is billed all the same: paying it is what brings service back.
    const bills = await database.db
      .select()
      .from(invoices)
      .where(eq(invoices.subscriptionId, subscription.id));
    expect(bills.filter((i) => i.kind === "recurring" && i.periodStart?.getTime() === end)).toHaveLength(1);

    const paid = await cash(
      ctx,
      customer.id,
      -(await ledgerSum(database.db, customer.id)),
      `all-${customer.id}`,
    );
    expect(paid.restoredSubscriptionIds).toEqual([subscription.id]);
    const after = await sub(subscription.id);
    expect(after.status).toBe("active");
    expect(after.currentPeriodStart).toEqual(clock.now());
  });

  it("free days move a plan change's top-up with the next period: no suspension inside them", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-08-01T08:00:00Z"));
    const basic = await createPlan(database.db, { priceCents: 100_000 });
    const premium = await createPlan(database.db, { priceCents: 200_000 });
    const { customer, subscription } = await activeSubscriber(ctx, basic.id);
    const end = subscription.currentPeriodEnd.getTime();
    clock.set(new Date(end - 2 * DAY));
    await issueRecurringInvoices(ctx, job);
    await cash(ctx, customer.id, 100_000, `renew-${customer.id}`);
    // Upgraded two days before the end: today's charge paid, the next period's top-up due at its start.
    await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: premium.id });
    await cash(ctx, customer.id, -(await ledgerSum(database.db, customer.id)) - 100_000, `up-${customer.id}`);

    const { subscription: extended } = await extendService(ctx, admin, {
      subscriptionId: subscription.id,
      days: 7,
      reason: "outage",
    });
    expect(extended.currentPeriodEnd.getTime()).toBe(end + 7 * DAY);
    const topUp = (
      await database.db.select().from(invoices).where(eq(invoices.subscriptionId, subscription.id))
    ).find((i) => i.kind === "proration" && i.status === "open");
    expect(topUp!.dueAt.getTime()).toBe(end + 7 * DAY);

    clock.set(new Date(end + DAY + 2 * HOUR));
    await issueRecurringInvoices(ctx, job);
    await suspendOverdue(ctx, job);
    expect((await sub(subscription.id)).status).toBe("active");
  });

  it("one free day at a short month's end moves the paid-until date by one day", async () => {
    // Activated on 30 January: paid up to 28 February (there is no 30 February).
    const { ctx } = billingContext(database.db, new FakeClock("2027-01-30T08:00:00Z"));
    const plan = await createPlan(database.db, { priceCents: 250_000 });
    const { subscription } = await activeSubscriber(ctx, plan.id);
    expect(subscription.currentPeriodEnd.toISOString()).toBe("2027-02-28T08:00:00.000Z");
    const { subscription: extended } = await extendService(ctx, admin, {
      subscriptionId: subscription.id,
      days: 1,
      reason: "outage",
    });
    expect(extended.currentPeriodEnd.toISOString()).toBe("2027-03-01T08:00:00.000Z");
  });

  it("paying after a suspension starts the downgrade that was scheduled and billed, for its own period", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-06-01T08:00:00Z"));
    const monthly = await createPlan(database.db, { priceCents: 300_000 });
    // KES 600 a week is cheaper by the day than KES 3,000 a month: a downgrade, not an upgrade.
    const weekly = await createPlan(database.db, { priceCents: 60_000, periodUnit: "days", periodCount: 7 });
    const { customer, subscription } = await activeSubscriber(ctx, monthly.id);
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - 10 * DAY));
    await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: weekly.id });
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - 3 * DAY));
    await issueRecurringInvoices(ctx, job);
    clock.set(new Date(subscription.currentPeriodEnd.getTime() + DAY + HOUR));
    expect((await suspendOverdue(ctx, job)).suspended).toBe(1);

    clock.advance(2 * DAY);
    const paid = await cash(ctx, customer.id, 60_000, `late-${customer.id}`);
    expect(paid.restoredSubscriptionIds).toEqual([subscription.id]);
    const after = await sub(subscription.id);
    expect(after).toMatchObject({ planId: weekly.id, nextPlanId: null });
    expect(after.currentPeriodEnd.getTime() - clock.now().getTime()).toBe(7 * DAY);
  });

  it("a downgrade chosen in the grace days after the period end is announced with the next payment, not for a date past", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-12-01T08:00:00Z"));
    const basic = await createPlan(database.db, { priceCents: 100_000 });
    const fast = await createPlan(database.db, { priceCents: 200_000 });
    const { customer, subscription } = await activeSubscriber(ctx, fast.id);
    clock.set(new Date(subscription.currentPeriodEnd.getTime() + 12 * HOUR));
    await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: basic.id });
    const [notice] = await database.db
      .select()
      .from(messageOutbox)
      .where(
        and(
          eq(messageOutbox.recipient, customer.phone),
          eq(messageOutbox.template, "plan_change_next_payment"),
        ),
      );
    expect(notice!.params).toEqual({ plan: planNameIn(basic, customer.language) });
  });

  it("choosing the current plan again drops the downgrade waiting for the period end, and the next bill is the full price", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-09-01T08:00:00Z"));
    const basic = await createPlan(database.db, { priceCents: 100_000 });
    const fast = await createPlan(database.db, { priceCents: 200_000 });
    const { customer, subscription } = await activeSubscriber(ctx, fast.id);
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - 2 * DAY));
    await issueRecurringInvoices(ctx, job);
    await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: basic.id });
    expect(await ledgerSum(database.db, customer.id)).toBe(-100_000);

    const kept = await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: fast.id });
    expect(kept.kind).toBe("keep");
    expect(await sub(subscription.id)).toMatchObject({ planId: fast.id, nextPlanId: null });
    expect(await ledgerSum(database.db, customer.id)).toBe(-200_000);
    const [notice] = await database.db
      .select()
      .from(messageOutbox)
      .where(
        and(eq(messageOutbox.recipient, customer.phone), eq(messageOutbox.template, "plan_change_dropped")),
      );
    expect(notice).toBeDefined();
    await expect(
      changePlan(ctx, admin, { subscriptionId: subscription.id, planId: fast.id }),
    ).rejects.toThrow(/already on that plan/);
  });
});
