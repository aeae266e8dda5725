import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Subscription } from "../../src/billing/accounts.ts";
import type { BillingContext } from "../../src/billing/context.ts";
import { suspendOverdue } from "../../src/billing/dunning.ts";
import { importCustomers } from "../../src/billing/import.ts";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { changePlan } from "../../src/billing/plan-change.ts";
import { quotePlanChange } from "../../src/billing/plan-change-quote.ts";
import { updatePlan } from "../../src/billing/plans.ts";
import { DAY, FakeClock, HOUR } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { customers, subscriptions } from "../../src/db/schema/index.ts";
import { activeSubscriber, admin, billingContext, createPlan, job, ledgerSum } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";

/**
 * An admin who changes a plan's price changes what the next periods cost, not what the periods
 * already billed were worth: a plan change values the unused part of the period at what it was
 * billed at.
 */
let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

const monthly = (priceCents: number, extra: { code?: string } = {}) =>
  createPlan(database.db, { priceCents, periodUnit: "days", periodCount: 30, ...extra });

async function subscriptionRow(id: number) {
  const [row] = await database.db.select().from(subscriptions).where(eq(subscriptions.id, id));
  return row!;
}

let cashPayments = 0;
function payCash(ctx: BillingContext, customerId: number, amountCents: number) {
  cashPayments++;
  return applyPayment(ctx, admin, {
    customerId,
    method: "cash",
    provider: "cash",
    providerRef: `cash-${customerId}-${cashPayments}`,
    amountCents,
  });
}

/** The invoice run an hour after the period end: the subscription, in its next period. */
async function rolledOver(ctx: BillingContext, clock: FakeClock, subscription: Subscription) {
  clock.set(new Date(subscription.currentPeriodEnd.getTime() + HOUR));
  await issueRecurringInvoices(ctx, job);
  const rolled = await subscriptionRow(subscription.id);
  expect(rolled.currentPeriodStart).toEqual(subscription.currentPeriodEnd);
  return rolled;
}

/** The quote for a move to `planId` halfway through the subscription's current period. */
function quoteHalfway(ctx: BillingContext, clock: FakeClock, subscription: Subscription, planId: number) {
  clock.set(new Date(subscription.currentPeriodStart.getTime() + 15 * DAY));
  return quotePlanChange(database.db, ctx, { subscriptionId: subscription.id, planId });
}

describe("a plan change after an admin changed a plan's price", () => {
  it("an upgrade halfway through the period values the old plan at what the period was billed at, not its new price", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-05-01T00:00:00Z"));
    const home = await monthly(250_000);
    const premium = await monthly(400_000);
    const { customer, subscription } = await activeSubscriber(ctx, home.id);
    clock.advance(5 * DAY);
    await updatePlan(ctx, admin, home.code, { priceCents: 300_000 });
    clock.advance(10 * DAY);
    // Half the period left: KES 1,250 of Home paid and unused, KES 2,000 of Premium to pay for.
    const quote = await quotePlanChange(database.db, ctx, {
      subscriptionId: subscription.id,
      planId: premium.id,
    });
    expect(quote).toMatchObject({ kind: "upgrade", chargeCents: 75_000, payableCents: 75_000 });
    await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: premium.id });
    expect(await ledgerSum(database.db, customer.id)).toBe(-75_000);
  });

  it("an immediate downgrade credits the unused part at what was paid for it, after a price cut", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-05-02T00:00:00Z"), {
      downgradeMode: "immediate",
    });
    const premium = await monthly(400_000);
    const home = await monthly(250_000);
    const { customer, subscription } = await activeSubscriber(ctx, premium.id);
    await updatePlan(ctx, admin, premium.code, { priceCents: 300_000 });
    clock.advance(15 * DAY);
    // Half of the KES 4,000 paid is unused; half of Home is KES 1,250: KES 750 back.
    const quote = await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: home.id });
    expect(quote).toMatchObject({ kind: "downgrade", creditCents: 75_000 });
    expect(await ledgerSum(database.db, customer.id)).toBe(75_000);
  });

  it("a second change in the period values the plan taken mid-period at the price it was charged at", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-05-03T00:00:00Z"), {
      downgradeMode: "immediate",
    });
    const home = await monthly(200_000);
    const premium = await monthly(400_000);
    const { customer, subscription } = await activeSubscriber(ctx, home.id);
    clock.advance(6 * DAY);
    // 24 of 30 days left: KES 1,600 more for Premium's rest.
    const up = await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: premium.id });
    expect(up.chargeCents).toBe(160_000);
    await updatePlan(ctx, admin, premium.code, { priceCents: 500_000 });
    clock.advance(9 * DAY);
    // Back to Home with 15 days left: Premium's rest is worth KES 2,000 at the price charged
    // (KES 2,500 at its new one), Home's KES 1,000.
    const down = await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: home.id });
    expect(down).toMatchObject({ kind: "downgrade", creditCents: 100_000 });
    expect(await ledgerSum(database.db, customer.id)).toBe(-160_000 + 100_000);
  });

  it("the next period, billed at the new price, is valued at the new price", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-05-04T00:00:00Z"));
    const home = await monthly(250_000);
    const premium = await monthly(400_000);
    const { customer, subscription } = await activeSubscriber(ctx, home.id);
    await updatePlan(ctx, admin, home.code, { priceCents: 300_000 });
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - DAY));
    await issueRecurringInvoices(ctx, job);
    await payCash(ctx, customer.id, 300_000);
    const rolled = await rolledOver(ctx, clock, subscription);
    // Half of the KES 3,000 period left against half of Premium's KES 4,000.
    const quote = await quoteHalfway(ctx, clock, rolled, premium.id);
    expect(quote).toMatchObject({ kind: "upgrade", chargeCents: 50_000 });
  });

  it("a period restored after a suspension is valued at the bill that was paid for it", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-05-05T00:00:00Z"));
    const home = await monthly(250_000);
    const premium = await monthly(400_000);
    const { customer, subscription } = await activeSubscriber(ctx, home.id);
    await updatePlan(ctx, admin, home.code, { priceCents: 300_000 });
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - DAY));
    await issueRecurringInvoices(ctx, job);
    clock.set(new Date(subscription.currentPeriodEnd.getTime() + 3 * DAY));
    await suspendOverdue(ctx, job);
    const suspended = await subscriptionRow(subscription.id);
    expect(suspended.status).toBe("suspended");
    await updatePlan(ctx, admin, home.code, { priceCents: 200_000 });
    // The KES 3,000 bill issued before the price cut, paid now: a fresh period starts.
    await payCash(ctx, customer.id, 300_000);
    const restored = await subscriptionRow(subscription.id);
    expect(restored.status).toBe("active");
    // Half of the KES 3,000 paid against half of Premium's KES 4,000.
    const quote = await quoteHalfway(ctx, clock, restored, premium.id);
    expect(quote).toMatchObject({ kind: "upgrade", chargeCents: 50_000 });
  });
});

describe("a plan change that repriced the next period's bill already out", () => {
  it("an upgrade after the renewal was issued: the next period is valued at the new plan's price", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-05-01T00:00:00Z"));
    const home = await monthly(250_000);
    const premium = await monthly(400_000);
    const ultra = await monthly(500_000);
    const { customer, subscription } = await activeSubscriber(ctx, home.id);
    // The renewal is issued ahead (lead time) at Home's KES 2,500 and paid.
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - 2 * DAY));
    await issueRecurringInvoices(ctx, job);
    await payCash(ctx, customer.id, 250_000);
    // Upgrade to Premium now: charged for the 2 days left, and KES 1,500 more for the next period.
    const up = await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: premium.id });
    expect(up.kind).toBe("upgrade");
    await payCash(ctx, customer.id, up.chargeCents + 150_000);
    const rolled = await rolledOver(ctx, clock, subscription);
    expect(rolled.planId).toBe(premium.id);
    // The period was paid KES 2,500 + 1,500 = KES 4,000, Premium's price.
    // Half of Ultra's KES 5,000 less half of Premium's KES 4,000.
    const quote = await quoteHalfway(ctx, clock, rolled, ultra.id);
    expect(quote).toMatchObject({ kind: "upgrade", chargeCents: 50_000 });
  });

  it("a downgrade scheduled after the renewal was issued: an upgrade back mid-period is not free", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-05-02T00:00:00Z"));
    const premium = await monthly(400_000);
    const home = await monthly(250_000);
    const { customer, subscription } = await activeSubscriber(ctx, premium.id);
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - 2 * DAY));
    await issueRecurringInvoices(ctx, job); // renewal at Premium's KES 4,000
    const down = await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: home.id });
    expect(down).toMatchObject({ kind: "downgrade", immediate: false });
    // KES 1,500 was credited on the renewal: the next period costs KES 2,500.
    await payCash(ctx, customer.id, 250_000);
    const rolled = await rolledOver(ctx, clock, subscription);
    expect(rolled.planId).toBe(home.id);
    // Half of Premium's KES 4,000 less half of Home's KES 2,500.
    const quote = await quoteHalfway(ctx, clock, rolled, premium.id);
    expect(quote).toMatchObject({ kind: "upgrade", chargeCents: 75_000 });
  });
});

describe("a restored period whose bill was not a plan's price", () => {
  it("an imported suspended debtor's arrears, paid, are not taken for the price of the period restored", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-06-01T06:00:00Z"), {
      downgradeMode: "immediate",
    });
    await monthly(250_000, { code: "pe-home" });
    const basic = await monthly(100_000, { code: "pe-basic" });
    // Three months of arrears (KES 7,500) on Home (KES 2,500 a month).
    const report = await importCustomers(
      ctx,
      admin,
      [
        "account,name,phone,plan,status,expires,router,username,balance",
        "PE001,Arrears Debtor,0712000401,pe-home,suspended,2026-05-20,,,-7500",
      ].join("\n"),
    );
    expect(report.committed).toBe(true);
    const [row] = await database.db
      .select({ customer: customers, subscription: subscriptions })
      .from(customers)
      .innerJoin(subscriptions, eq(subscriptions.customerId, customers.id))
      .where(eq(customers.accountNumber, "PE001"));
    const paid = await payCash(ctx, row!.customer.id, 750_000);
    expect(paid.restoredSubscriptionIds).toEqual([row!.subscription.id]);
    const restored = await subscriptionRow(row!.subscription.id);
    expect(restored.status).toBe("active");
    // One Home period restored: what it was billed at is Home's KES 2,500, not the arrears.
    clock.set(new Date(restored.currentPeriodStart.getTime() + 15 * DAY));
    // Half of Home's KES 2,500 less half of Basic's KES 1,000: KES 750 back.
    const down = await changePlan(ctx, admin, { subscriptionId: restored.id, planId: basic.id });
    expect(down).toMatchObject({ kind: "downgrade", creditCents: 75_000 });
  });
});
