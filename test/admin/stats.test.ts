import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cancelSubscription } from "../../src/billing/cancel-subscription.ts";
import type { BillingContext } from "../../src/billing/context.ts";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import {
  type BusinessStats,
  businessStats,
  halfUp,
  monthlyEquivalentCents,
  monthlyRevenue,
} from "../../src/billing/stats.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { suspendSubscription } from "../../src/billing/suspend-resume.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { subscriptions } from "../../src/db/schema/index.ts";
import { activeSubscriber, admin, billingContext, createPlan, job, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";

const TZ = "Africa/Nairobi"; // UTC+3 all year

describe("monthly equivalents and rounding (integer arithmetic)", () => {
  it("converts months, days and hours to a 30.4375-day month, half-up per subscription", () => {
    expect(monthlyEquivalentCents(150_000, "months", 1)).toBe(150_000);
    expect(monthlyEquivalentCents(400_000, "months", 3)).toBe(133_333); // 133,333.33
    expect(monthlyEquivalentCents(200_000, "months", 3)).toBe(66_667); // 66,666.67
    expect(monthlyEquivalentCents(40_000, "days", 7)).toBe(173_929); // 40,000 × 30.4375 / 7 = 173,928.57
    expect(monthlyEquivalentCents(5_000, "hours", 24)).toBe(152_188); // 5,000 × 730.5 / 24 = 152,187.5
    expect(halfUp(5, 2)).toBe(3);
    expect(halfUp(7, 3)).toBe(2);
    expect(halfUp(0, 0)).toBe(0);
  });
});

describe("business stats on a seeded database", () => {
  let database: Database;
  let ctx: BillingContext;
  let clock: FakeClock;
  const ids: Record<string, { customerId: number; subscriptionId: number }> = {};

  /** `subscriptions.created_at` is stamped by the database's own clock: put it on the fake one. */
  async function backdate(subscriptionId: number) {
    await ctx.db
      .update(subscriptions)
      .set({ createdAt: clock.now() })
      .where(eq(subscriptions.id, subscriptionId));
  }
  async function active(name: string, at: string, planId: number) {
    clock.set(at);
    const { customer, subscription } = await activeSubscriber(ctx, planId, name);
    await backdate(subscription.id);
    ids[name] = { customerId: customer.id, subscriptionId: subscription.id };
  }
  async function pending(name: string, at: string, planId: number, paidCents = 0) {
    clock.set(at);
    const created = await createCustomerWithSubscription(ctx, admin, { name, phone: uniquePhone(), planId });
    await backdate(created.subscription.id);
    ids[name] = { customerId: created.customer.id, subscriptionId: created.subscription.id };
    if (paidCents > 0) await pay(name, at, paidCents);
  }
  async function pay(name: string, at: string, amountCents: number) {
    clock.set(at);
    await applyPayment(ctx, admin, {
      customerId: ids[name]!.customerId,
      method: "cash",
      provider: "cash",
      providerRef: `${name}-${at}`,
      amountCents,
    });
  }

  beforeAll(async () => {
    database = await createTestDatabase();
    ({ ctx, clock } = billingContext(database.db, new FakeClock("2026-01-15T09:00:00Z"), { timezone: TZ }));
    const monthly = await createPlan(ctx.db, { priceCents: 150_000 });
    const weekly = await createPlan(ctx.db, { priceCents: 40_000, periodUnit: "days", periodCount: 7 });
    const daily = await createPlan(ctx.db, { priceCents: 5_000, periodUnit: "hours", periodCount: 24 });
    const quarterly = await createPlan(ctx.db, { priceCents: 400_000, periodCount: 3 });

    // January: S8 joins (KES 1,500); February: S6 and S7 join (2 × 1,500), S8 leaves.
    await active("S8", "2026-01-15T09:00:00Z", monthly.id);
    await active("S6", "2026-02-10T09:00:00Z", monthly.id);
    await active("S7", "2026-02-10T09:00:00Z", monthly.id);
    clock.set("2026-02-20T09:00:00Z");
    await cancelSubscription(ctx, admin, { subscriptionId: ids.S8!.subscriptionId, reason: "moved away" });
    // 22:00 UTC on Feb 28 is 01:00 on March 1 in Nairobi: a March subscriber and a March payment.
    await active("S10", "2026-02-28T22:00:00Z", monthly.id); // period ends 2026-03-31T22:00Z
    await active("S1", "2026-03-05T07:00:00Z", monthly.id); // paid 1,500
    await active("S4", "2026-03-05T07:00:00Z", quarterly.id); // paid 4,000
    await pending("S5", "2026-03-05T07:00:00Z", monthly.id); // owes 1,500
    await pending("S9", "2026-03-05T07:00:00Z", monthly.id, 100_000); // paid 1,000 of 1,500
    clock.set("2026-03-20T08:00:00Z");
    await suspendSubscription(ctx, admin, { subscriptionId: ids.S6!.subscriptionId, reason: "abuse" });
    await cancelSubscription(ctx, admin, { subscriptionId: ids.S7!.subscriptionId, reason: "unhappy" });
    await active("S2", "2026-03-30T07:00:00Z", weekly.id); // paid 400 (13:00 March 30 in Nairobi)
    await active("S3", "2026-03-31T20:00:00Z", daily.id); // paid 50; period ends 2026-04-01T20:00Z
    await pay("S1", "2026-03-31T20:30:00Z", 20_000); // 23:30 on March 31 in Nairobi: March
    // Next-period invoices within the 96 h lead: S10 (from 2026-03-31T22:00Z) and S3 only.
    clock.set("2026-03-31T20:40:00Z");
    const run = await issueRecurringInvoices(ctx, job);
    expect(run.issued).toBe(2);
    await pay("S3", "2026-03-31T20:42:00Z", 5_000); // S3's next period is paid
    await pay("S4", "2026-03-31T21:30:00Z", 10_000); // 00:30 on April 1 in Nairobi: April
  });
  afterAll(async () => {
    await database.close();
  });

  it("figures at 23:45 on March 31 in Nairobi, worked out by hand", async () => {
    const stats = await businessStats(ctx.db, new FakeClock("2026-03-31T20:45:00Z"), { timezone: TZ });
    const expected: Omit<BusinessStats, "at"> = {
      timezone: TZ,
      active: 5, // S1, S2, S3, S4, S10
      suspended: 1, // S6
      pending: 2, // S5, S9
      newThisMonth: 7, // S10 (01:00 March 1 local), S1, S4, S5, S9, S2, S3
      churnedThisMonth: 1, // S7 (S8 left in February)
      // March 31 local = [2026-03-30T21:00Z, 2026-03-31T21:00Z): S3 5,000 + S1 20,000 + S3 5,000
      collectedTodayCents: 30_000,
      // S10 150,000 + S1 150,000 + S4 400,000 + S9 100,000 + S2 40,000 + S3 5,000 + S1 20,000 + S3 5,000
      collectedThisMonthCents: 870_000,
      // S1 150,000 + S10 150,000 + S4 133,333 + S2 173,929 + S3 152,188
      mrrCents: 759_450,
      arpuCents: 151_890, // 759,450 / 5
      // S5 1,500 (first invoice), S9 500 (1,000 of 1,500 paid), S10 1,500 (next period's invoice)
      owing: { customers: 3, totalCents: 350_000 },
      // within (20:45Z, +24 h]: S10 at 22:00Z (open invoice), S3 at 2026-04-01T20:00Z (paid ahead)
      expiringIn24h: { total: 2, unpaid: 1 },
    };
    expect(stats).toEqual({ at: new Date("2026-03-31T20:45:00Z"), ...expected });
  });

  it("a payment at 00:30 on April 1 in Nairobi (still March 31 in UTC) counts in April", async () => {
    const stats = await businessStats(ctx.db, new FakeClock("2026-04-01T06:00:00Z"), { timezone: TZ });
    expect(stats.collectedTodayCents).toBe(10_000);
    expect(stats.collectedThisMonthCents).toBe(10_000);
    expect(stats.newThisMonth).toBe(0);
    expect(stats.churnedThisMonth).toBe(0);
    // In UTC the same instant would still be in March: the day and month follow the ISP's zone.
    const utc = await businessStats(ctx.db, new FakeClock("2026-03-31T23:00:00Z"), { timezone: "UTC" });
    expect(utc.collectedTodayCents).toBe(30_000 + 10_000); // S3, S1, S3 and S4's 21:30Z
    expect(utc.collectedThisMonthCents).toBe(870_000 - 150_000 + 10_000); // S10 paid on Feb 28 UTC
  });

  it("monthly revenue: collected, new and on the books per month", async () => {
    const rows = await monthlyRevenue(ctx.db, {
      months: 5,
      timezone: TZ,
      now: new Date("2026-04-01T06:00:00Z"),
    });
    expect(rows).toEqual([
      { month: "2025-12", collectedCents: 0, newSubscribers: 0, activeAtMonthEnd: 0 },
      { month: "2026-01", collectedCents: 150_000, newSubscribers: 1, activeAtMonthEnd: 1 }, // S8
      { month: "2026-02", collectedCents: 300_000, newSubscribers: 2, activeAtMonthEnd: 2 }, // S6, S7
      // +S10, S1, S4, S2, S3 (S5, S9 still pending), −S7
      { month: "2026-03", collectedCents: 870_000, newSubscribers: 7, activeAtMonthEnd: 6 },
      { month: "2026-04", collectedCents: 10_000, newSubscribers: 0, activeAtMonthEnd: 6 },
    ]);
    // The current month matches /stats: on the books now = active + suspended.
    const stats = await businessStats(ctx.db, new FakeClock("2026-04-01T06:00:00Z"), { timezone: TZ });
    expect(rows.at(-1)!.activeAtMonthEnd).toBe(stats.active + stats.suspended);
    expect(rows.at(-1)!.collectedCents).toBe(stats.collectedThisMonthCents);
    // A window that starts after some history: the months before it are carried in.
    const recent = await monthlyRevenue(ctx.db, {
      months: 1,
      timezone: TZ,
      now: new Date("2026-03-15T00:00:00Z"),
    });
    expect(recent).toEqual([
      { month: "2026-03", collectedCents: 870_000, newSubscribers: 7, activeAtMonthEnd: 6 },
    ]);
    await expect(monthlyRevenue(ctx.db, { months: 0, timezone: TZ, now: new Date() })).rejects.toThrow(
      RangeError,
    );
  });
});
