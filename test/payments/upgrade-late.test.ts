import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sendReminders, suspendOverdue } from "../../src/billing/dunning.ts";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { quotePlanChange } from "../../src/billing/plan-change-quote.ts";
import { DAY, FakeClock, HOUR } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { invoices, messageOutbox, subscriptions } from "../../src/db/schema/index.ts";
import { activeSubscriber, billingContext, createPlan, job, ledgerSum } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { type Harness, pay, startHarness } from "./harness.ts";

/**
 * An upgrade paid by STK in the last days of a period, when the next period's bill is already
 * issued and waiting: the payment pays the upgrade it was asked for, so the subscriber is neither
 * reminded of it nor cut off before their paid period ends.
 */
let database: Database;
let h: Harness;
const clock = new FakeClock("2026-04-01T08:00:00Z");
let ctx: ReturnType<typeof billingContext>["ctx"];

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  h = await startHarness(ctx);
});
afterAll(async () => {
  await h?.close();
  await database.close();
});

describe("an upgrade paid while the next period's bill waits", () => {
  it("pays the upgrade's own bill: no reminder of it, no suspension before the period ends", async () => {
    const plan = await createPlan(database.db, { priceCents: 150_000 });
    const bigger = await createPlan(database.db, { priceCents: 300_000 });
    const { customer, subscription } = await activeSubscriber(ctx, plan.id, "Late Upgrader");
    // Two days before the period ends: the next period's bill was issued (96 h ahead) and waits.
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - 2 * DAY));
    await issueRecurringInvoices(ctx, job);
    const quote = await quotePlanChange(database.db, ctx, {
      subscriptionId: subscription.id,
      planId: bigger.id,
    });
    expect(quote.kind).toBe("upgrade");

    const done = await pay(
      h,
      ctx,
      {
        customerId: customer.id,
        phone: customer.phone,
        amountCents: quote.chargeCents,
        purpose: "plan_change",
        planId: bigger.id,
        subscriptionId: subscription.id,
      },
      { outcome: "success" },
    );
    expect(done.outcome).toMatchObject({ planChange: "upgrade" });
    const bills = await database.db
      .select()
      .from(invoices)
      .where(eq(invoices.subscriptionId, subscription.id))
      .orderBy(invoices.id);
    const upgrade = bills.find((b) => b.kind === "proration")!;
    expect(upgrade).toMatchObject({ amountCents: quote.chargeCents, status: "paid" });
    // The next period, at the new price, is what is still owed.
    expect(await ledgerSum(database.db, customer.id)).toBe(-300_000);

    // Past the upgrade bill's grace day, still inside the paid period.
    clock.advance(DAY + HOUR);
    await sendReminders(ctx, job);
    await suspendOverdue(ctx, job);
    const [after] = await database.db
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.id, subscription.id));
    expect(after).toMatchObject({ status: "active", planId: bigger.id });
    const told = await database.db
      .select({ template: messageOutbox.template, params: messageOutbox.params })
      .from(messageOutbox)
      .where(and(eq(messageOutbox.recipient, customer.phone)));
    expect(told.filter((m) => m.template === "suspended")).toEqual([]);
    expect(
      told.filter((m) => m.template === "invoice_reminder" && m.params.amountCents === quote.chargeCents),
    ).toEqual([]);
  });
});
