import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { changePlan } from "../../src/billing/plan-change.ts";
import { quotePlanChange } from "../../src/billing/plan-change-quote.ts";
import { updatePlan } from "../../src/billing/plans.ts";
import { DAY, FakeClock, HOUR } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { subscriptions } from "../../src/db/schema/index.ts";
import { activeSubscriber, admin, billingContext, createPlan, ledgerSum } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

async function sub(id: number) {
  const [row] = await database.db.select().from(subscriptions).where(eq(subscriptions.id, id));
  return row!;
}

describe("a plan change after the ISP changed the current plan's price", () => {
  it("values the unused part of the period at the price paid for it, not at the new price", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-04-01T06:00:00Z"), {
      downgradeMode: "immediate",
    });
    const home = await createPlan(database.db, { priceCents: 100_000, periodUnit: "days", periodCount: 30 });
    const lite = await createPlan(database.db, { priceCents: 150_000, periodUnit: "days", periodCount: 30 });
    const { customer, subscription } = await activeSubscriber(ctx, home.id);
    // Paid KES 1,000 for 30 days; halfway, the ISP raises the plan to KES 3,000 "from the next period".
    clock.advance(15 * DAY);
    await updatePlan(ctx, admin, home.code, { priceCents: 300_000 });
    const done = await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: lite.id });
    // 15 unused days of what was paid (KES 1,000) are worth KES 500; 15 days of Lite cost KES 750.
    // Actual: KES 750 credited (half of the new KES 3,000 less KES 750), more than was ever paid for them.
    expect(done.creditCents).toBe(0);
    expect(await ledgerSum(database.db, customer.id)).toBeLessThanOrEqual(0);
  });
});

describe("a plan change between short plans of different lengths", () => {
  it("a move from a daily plan to a 3-day plan with 12 hours left is priced at the 3-day plan's own rate", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-04-01T06:00:00Z"));
    const daily = await createPlan(database.db, { priceCents: 10_000, periodUnit: "days", periodCount: 1 });
    // KES 250 for 3 days: about KES 83 a day, cheaper by the day than the daily plan.
    const threeDays = await createPlan(database.db, {
      priceCents: 25_000,
      periodUnit: "days",
      periodCount: 3,
    });
    const { subscription } = await activeSubscriber(ctx, daily.id);
    clock.advance(12 * HOUR);
    const quote = await quotePlanChange(database.db, ctx, {
      subscriptionId: subscription.id,
      planId: threeDays.id,
    });
    const done = await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: threeDays.id });
    const after = await sub(subscription.id);
    // It runs to the end of the day already paid for: 12 hours of a KES 250/3-day plan (KES 42)
    // replace 12 unused hours of the daily plan (KES 50): nothing to pay.
    expect(after.currentPeriodEnd.getTime() - clock.now().getTime()).toBe(12 * HOUR);
    // Actual: KES 75, the 3-day price spread over one day (the 3-day tolerance meant for months).
    expect(quote.chargeCents).toBe(0);
    expect(done.chargeCents).toBe(0);
  });
});
