import { and, eq } from "drizzle-orm";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adjustBalance } from "../../src/billing/adjust.ts";
import { sendReminders, suspendOverdue } from "../../src/billing/dunning.ts";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { DAY, FakeClock, HOUR } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import {
  auditLog,
  invoices,
  messageOutbox,
  provisioningOutbox,
  subscriptions,
} from "../../src/db/schema/index.ts";
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
import { inconsistentAccounts } from "./money-races-support.ts";

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

const invoicesOf = (customerId: number) =>
  database.db.select().from(invoices).where(eq(invoices.customerId, customerId)).orderBy(invoices.id);
const messagesTo = (phone: string, template: string) =>
  database.db
    .select()
    .from(messageOutbox)
    .where(and(eq(messageOutbox.recipient, phone), eq(messageOutbox.template, template)));

describe("balance corrections", () => {
  type Step = { kind: "pay" | "credit" | "charge"; cents: number };

  it("balance = payments + credits - charges - invoices, and the invoices agree with it, in any order", async () => {
    const { ctx } = billingContext(database.db, new FakeClock("2026-10-01T00:00:00Z"));
    const plan = await createPlan(database.db, { priceCents: 150_000 });
    let run = 0;
    const step = fc.record({
      kind: fc.constantFrom("pay" as const, "credit" as const, "charge" as const),
      cents: fc.integer({ min: 1, max: 300_000 }),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 8 }), async (steps: Step[]) => {
        const { customer, invoice } = await createCustomerWithSubscription(ctx, admin, {
          name: "Prop",
          phone: uniquePhone(),
          planId: plan.id,
        });
        let expected = -invoice.amountCents;
        for (const s of steps) {
          if (s.kind === "pay")
            await applyPayment(ctx, admin, {
              customerId: customer.id,
              method: "cash",
              provider: "cash",
              providerRef: `adjust-prop-${++run}`,
              amountCents: s.cents,
            });
          else
            await adjustBalance(ctx, admin, {
              customerId: customer.id,
              amountCents: s.kind === "credit" ? s.cents : -s.cents,
              reason: "property",
            });
          expected += s.kind === "charge" ? -s.cents : s.cents;
          expect(await ledgerSum(database.db, customer.id)).toBe(expected);
          expect(await inconsistentAccounts(database.db, [customer.id])).toEqual([]);
          // Oldest due first: after the first bill not fully paid, no later one holds money.
          const open = (await invoicesOf(customer.id))
            .filter((i) => i.status === "open")
            .sort((a, b) => a.dueAt.getTime() - b.dueAt.getTime() || a.id - b.id);
          for (const later of open.slice(1)) expect(later.paidCents).toBe(0);
        }
        // Each charge is an invoice of its own, paid oldest first like any other.
        const manual = (await invoicesOf(customer.id)).filter((i) => i.kind === "manual");
        expect(manual.map((i) => i.amountCents)).toEqual(
          steps.filter((s) => s.kind === "charge").map((s) => s.cents),
        );
      }),
      { numRuns: 20 },
    );
  });

  it("a credit that covers the first bill starts the service; a charge never cuts it off by itself", async () => {
    const clock = new FakeClock("2026-10-05T08:00:00Z");
    const { ctx } = billingContext(database.db, clock);
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { customer, subscription } = await createCustomerWithSubscription(ctx, admin, {
      name: "Goodwill",
      phone: uniquePhone(),
      planId: plan.id,
    });
    const credited = await adjustBalance(ctx, admin, {
      customerId: customer.id,
      amountCents: 100_000,
      reason: "router outage last month",
    });
    expect(credited).toEqual({ balanceCents: 0, restoredSubscriptionIds: [subscription.id] });
    const [started] = await database.db
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.id, subscription.id));
    expect(started!.status).toBe("active");

    const active = await activeSubscriber(ctx, plan.id, "Charged");
    const charged = await adjustBalance(ctx, admin, {
      customerId: active.customer.id,
      amountCents: -36_000,
      reason: "one payment credited twice",
    });
    expect(charged.balanceCents).toBe(await ledgerSum(database.db, active.customer.id));
    expect(charged.restoredSubscriptionIds).toEqual([]);
    clock.advance(5 * DAY);
    await suspendOverdue(ctx, job);
    const [still] = await database.db
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.id, active.subscription.id));
    expect(still!.status).toBe("active");
    const removals = await database.db
      .select()
      .from(provisioningOutbox)
      .where(
        and(
          eq(provisioningOutbox.subscriptionId, active.subscription.id),
          eq(provisioningOutbox.action, "suspend"),
        ),
      );
    expect(removals).toEqual([]);
    const audited = await database.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "balance.adjusted"), eq(auditLog.entityId, String(active.customer.id))));
    expect(audited).toMatchObject([
      {
        reason: "one payment credited twice",
        details: { amountCents: -36_000, balanceCents: charged.balanceCents },
      },
    ]);
  });

  it("a charge never takes what a paid next period holds: that period still starts, nobody is reminded or cut off", async () => {
    const clock = new FakeClock("2026-10-01T08:00:00Z");
    const { ctx } = billingContext(database.db, clock);
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { customer, subscription } = await activeSubscriber(ctx, plan.id, "Paid Ahead");
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - 2 * DAY));
    await issueRecurringInvoices(ctx, job);
    await applyPayment(ctx, admin, {
      customerId: customer.id,
      method: "cash",
      provider: "cash",
      providerRef: `ahead-${customer.id}`,
      amountCents: 100_000,
    });
    await adjustBalance(ctx, admin, {
      customerId: customer.id,
      amountCents: -5_000,
      reason: "router replaced",
    });
    const bills = await invoicesOf(customer.id);
    expect(bills.map((b) => [b.kind, b.status, b.paidCents])).toEqual([
      ["recurring", "paid", 100_000],
      ["recurring", "paid", 100_000],
      ["manual", "open", 0],
    ]);

    clock.set(new Date(subscription.currentPeriodEnd.getTime() + 3 * DAY));
    await issueRecurringInvoices(ctx, job);
    await sendReminders(ctx, job);
    await suspendOverdue(ctx, job);
    const [after] = await database.db
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.id, subscription.id));
    expect(after!.status).toBe("active");
    expect(after!.currentPeriodStart).toEqual(subscription.currentPeriodEnd);
    expect(await messagesTo(customer.phone, "invoice_reminder")).toEqual([]);
    expect(await messagesTo(customer.phone, "suspended")).toEqual([]);
  });

  it("service cut off for a renewal comes back once everything owed is paid, the charge too, as its notice said", async () => {
    const clock = new FakeClock("2026-10-01T08:00:00Z");
    const { ctx } = billingContext(database.db, clock);
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { customer, subscription } = await activeSubscriber(ctx, plan.id, "Repair Fee");
    await adjustBalance(ctx, admin, {
      customerId: customer.id,
      amountCents: -20_000,
      reason: "router replaced",
    });
    clock.set(new Date(subscription.currentPeriodEnd.getTime() + 5 * DAY));
    await issueRecurringInvoices(ctx, job);
    // Issued late, the renewal gets its grace day from then.
    clock.advance(DAY + HOUR);
    await suspendOverdue(ctx, job);
    const statusOf = async () =>
      (await database.db.select().from(subscriptions).where(eq(subscriptions.id, subscription.id)))[0]!;
    expect((await statusOf()).status).toBe("suspended");
    const [notice] = await messagesTo(customer.phone, "suspended");
    expect(notice!.params).toMatchObject({ amountCents: 120_000 });

    const pay = (cents: number, ref: string) =>
      applyPayment(ctx, admin, {
        customerId: customer.id,
        method: "cash",
        provider: "cash",
        providerRef: `${ref}-${customer.id}`,
        amountCents: cents,
      });
    await pay(100_000, "renewal");
    expect((await statusOf()).status).toBe("suspended");
    await pay(20_000, "fee");
    expect((await statusOf()).status).toBe("active");
    expect(await ledgerSum(database.db, customer.id)).toBe(0);
  });

  it("refuses a zero, an outsize or an unexplained correction, and one for nobody, changing nothing", async () => {
    const { ctx } = billingContext(database.db, new FakeClock("2026-10-06T08:00:00Z"));
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { customer } = await activeSubscriber(ctx, plan.id, "Unchanged");
    const before = await ledgerSum(database.db, customer.id);
    for (const [input, refusal] of [
      [{ customerId: customer.id, amountCents: 0, reason: "x" }, /not zero/],
      [{ customerId: customer.id, amountCents: 100_000_001, reason: "x" }, /at most KES 1,000,000/],
      [{ customerId: customer.id, amountCents: -100_000_001, reason: "x" }, /at most KES 1,000,000/],
      [{ customerId: customer.id, amountCents: 1.5, reason: "x" }, /whole number of cents/],
      [{ customerId: customer.id, amountCents: 500, reason: "  " }, /Say why/],
      [{ customerId: 999_999_999, amountCents: 500, reason: "x" }, /No such customer/],
    ] as const)
      await expect(adjustBalance(ctx, admin, input)).rejects.toThrow(refusal);
    expect(await ledgerSum(database.db, customer.id)).toBe(before);
    expect((await invoicesOf(customer.id)).filter((i) => i.kind === "manual")).toEqual([]);
  });
});
