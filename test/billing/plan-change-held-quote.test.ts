import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { prorationDelta } from "../../src/billing/money.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { changePlan } from "../../src/billing/plan-change.ts";
import { quotePlanChange } from "../../src/billing/plan-change-quote.ts";
import { DAY, FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { activeSubscriber, admin, billingContext, createPlan, ledgerSum } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

describe("an upgrade paid by M-Pesa seconds after its quote", () => {
  it("is charged what was paid even when the rest of the period got a shilling dearer meanwhile", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-04-02T12:00:00Z"));
    const basic = await createPlan(database.db, { priceCents: 100_000, periodUnit: "days", periodCount: 30 });
    const fast = await createPlan(database.db, { priceCents: 250_000, periodUnit: "days", periodCount: 30 });
    const { customer, subscription } = await activeSubscriber(ctx, basic.id);
    const start = subscription.currentPeriodStart.getTime();
    const total = subscription.currentPeriodEnd.getTime() - start;
    const charge = (at: number) =>
      prorationDelta(100_000, 250_000, subscription.currentPeriodEnd.getTime() - at, total);
    // Each share is rounded to the shilling on its own, so the difference is not monotone: find an
    // instant after which, 30 seconds later, the charge is a shilling more.
    let quotedAt = start + 10 * DAY;
    while (charge(quotedAt + 30_000) <= charge(quotedAt)) quotedAt += 1_000;

    clock.set(new Date(quotedAt));
    const change = { subscriptionId: subscription.id, planId: fast.id };
    const quoted = (await quotePlanChange(database.db, ctx, change)).payableCents;
    // The M-Pesa prompt is answered 30 seconds later: the subscriber pays exactly what was asked.
    clock.advance(30_000);
    await applyPayment(ctx, admin, {
      customerId: customer.id,
      method: "mpesa_stk",
      provider: "mpesa",
      providerRef: `RISE${customer.id}`,
      amountCents: quoted,
    });
    const done = await changePlan(ctx, admin, { ...change, paidCents: quoted });
    // Actual: charged a shilling more than paid; the KES 1 left owing is a bill that gets reminded
    // and, unpaid, suspends the subscriber who paid what M-Pesa asked.
    expect(done.chargeCents).toBe(quoted);
    expect(await ledgerSum(database.db, customer.id)).toBe(0);
  });
});
