import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cancelSubscription } from "../../src/billing/cancel-subscription.ts";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { changePlan } from "../../src/billing/plan-change.ts";
import { startSubscriptionInTx } from "../../src/billing/subscriptions.ts";
import { DAY, FakeClock } from "../../src/clock.ts";
import { customers, invoices } from "../../src/db/schema/index.ts";
import { activeSubscriber, admin, billingContext, createPlan, job, ledgerSum } from "../support/billing.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

/**
 * A customer with two subscriptions. One's next period, issued and not paid, is repriced by a
 * scheduled downgrade: the difference is credit, which pays the other subscription's bill due
 * first. The downgraded subscription is then cancelled before its next period starts: that bill is
 * voided and its credit taken back. The credit was spent, so what it paid is owed again: the bills
 * must show what the balance says is owed, or dunning never asks for it (and a payment of what the
 * bills ask leaves them unpaid).
 */

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.close();
});

describe("a downgrade's credit spent on another bill, then the downgraded subscription cancelled", () => {
  it("the bill the credit paid is owed again: open bills add up to what the balance owes", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-05-01T00:00:00Z"));
    const basic = await createPlan(database.db, { priceCents: 100_000, periodUnit: "days", periodCount: 30 });
    const fast = await createPlan(database.db, { priceCents: 200_000, periodUnit: "days", periodCount: 30 });
    // Subscription B first (its next bill falls due a day before A's).
    const { customer } = await activeSubscriber(ctx, basic.id);
    clock.advance(DAY);
    const [row] = await database.db.select().from(customers).where(eq(customers.id, customer.id));
    const a = await ctx.db.transaction((tx) =>
      startSubscriptionInTx(tx, ctx, admin, row!, fast, {
        routerId: null,
        networkUsername: `a-${customer.id}`,
        networkPassword: "secret-pw",
      }),
    );
    await applyPayment(ctx, admin, {
      customerId: customer.id,
      method: "cash",
      provider: "cash",
      providerRef: `a-first-${customer.id}`,
      amountCents: fast.priceCents,
    });
    clock.advance(27 * DAY);
    await issueRecurringInvoices(ctx, job);
    await changePlan(ctx, admin, { subscriptionId: a.subscription.id, planId: basic.id });
    await cancelSubscription(ctx, admin, { subscriptionId: a.subscription.id, reason: "moving away" });

    const owed = -(await ledgerSum(database.db, customer.id));
    const open = (await database.db.select().from(invoices).where(eq(invoices.customerId, customer.id)))
      .filter((i) => i.status === "open")
      .reduce((sum, i) => sum + i.amountCents - i.paidCents, 0);
    // B's next period (KES 1,000) is unpaid: nothing was paid towards it.
    expect(owed).toBe(100_000);
    expect(open).toBe(owed);
  });
});
