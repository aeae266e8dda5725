import { and, eq } from "drizzle-orm";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cancelSubscription } from "../../src/billing/cancel-subscription.ts";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { prorationDelta } from "../../src/billing/money.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { changePlan } from "../../src/billing/plan-change.ts";
import { heldQuote, QUOTE_HOLD_MS, quoteFrom, quotePlanChange } from "../../src/billing/plan-change-quote.ts";
import { periodAt } from "../../src/billing/service-periods.ts";
import { DAY, FakeClock, HOUR, MINUTE } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { invoices, ledgerEntries, provisioningOutbox, subscriptions } from "../../src/db/schema/index.ts";
import { activeSubscriber, admin, billingContext, createPlan, job, ledgerSum } from "../support/billing.ts";
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

describe("changing plan", () => {
  it("an upgrade halfway through a 30-day period charges half the price difference now and switches now", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-04-01T00:00:00Z"));
    const basic = await createPlan(database.db, { priceCents: 150_000, periodUnit: "days", periodCount: 30 });
    const fast = await createPlan(database.db, { priceCents: 300_000, periodUnit: "days", periodCount: 30 });
    const { customer, subscription } = await activeSubscriber(ctx, basic.id);
    clock.advance(15 * DAY);
    const quote = await quotePlanChange(database.db, ctx, {
      subscriptionId: subscription.id,
      planId: fast.id,
    });
    expect(quote).toMatchObject({ kind: "upgrade", chargeCents: 75_000, payableCents: 75_000 });
    expect(await ledgerSum(database.db, customer.id)).toBe(0); // a quote changes nothing

    await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: fast.id });
    expect((await sub(subscription.id)).planId).toBe(fast.id);
    expect(await ledgerSum(database.db, customer.id)).toBe(-75_000);
    const kicks = await database.db
      .select()
      .from(provisioningOutbox)
      .where(eq(provisioningOutbox.subscriptionId, subscription.id));
    expect(kicks.map((k) => k.action)).toContain("change_plan");
  });

  it("a plan of another period length is charged at its own rate: a week's rest on a monthly plan costs a share of a month", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-06-01T08:00:00Z"));
    const weekly = await createPlan(database.db, { priceCents: 70_000, periodUnit: "days", periodCount: 7 });
    const monthly = await createPlan(database.db, {
      priceCents: 300_000,
      periodUnit: "days",
      periodCount: 30,
    });
    const { subscription } = await activeSubscriber(ctx, weekly.id);
    // Half the week left: KES 350 unused; 3.5 days of the monthly plan cost KES 350 too.
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - 3 * DAY - 12 * HOUR));
    const quote = await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: monthly.id });
    expect(quote).toMatchObject({ kind: "upgrade", chargeCents: 0 });
    // Back at the same instant: nothing either way.
    const back = await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: weekly.id });
    expect(back.chargeCents + back.creditCents).toBe(0);
  });

  it("credit on the account pays an upgrade without a new payment", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-04-02T00:00:00Z"));
    const basic = await createPlan(database.db, { priceCents: 100_000, periodUnit: "days", periodCount: 30 });
    const fast = await createPlan(database.db, { priceCents: 200_000, periodUnit: "days", periodCount: 30 });
    const { customer, subscription } = await activeSubscriber(ctx, basic.id);
    await applyPayment(ctx, admin, {
      customerId: customer.id,
      method: "cash",
      provider: "cash",
      providerRef: `extra-${customer.id}`,
      amountCents: 100_000,
    });
    clock.advance(10 * DAY);
    const quote = await quotePlanChange(database.db, ctx, {
      subscriptionId: subscription.id,
      planId: fast.id,
    });
    expect(quote.payableCents).toBe(0);
    await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: fast.id });
    const proration = await database.db
      .select()
      .from(invoices)
      .where(eq(invoices.subscriptionId, subscription.id));
    // 20 of 30 days left: KES 1,333 (of 2,000) minus KES 667 (of 1,000), each share rounded once,
    // half up to a whole shilling.
    expect(proration.find((i) => i.kind === "proration")).toMatchObject({
      status: "paid",
      amountCents: 66_600,
    });
    expect(await ledgerSum(database.db, customer.id)).toBe(100_000 - 66_600);
  });

  it("an upgrade paid by M-Pesa is charged what was paid while its quote holds, not a minute's later price", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-04-02T12:00:00Z"));
    const basic = await createPlan(database.db, { priceCents: 100_000, periodUnit: "days", periodCount: 30 });
    // KES 10,000 more a month: the rest of the period gets a shilling cheaper every 4 minutes or so.
    const big = await createPlan(database.db, { priceCents: 1_100_000, periodUnit: "days", periodCount: 30 });
    for (const [waited, held] of [
      [10 * MINUTE, true],
      [30 * MINUTE, false],
    ] as const) {
      clock.set("2026-04-02T12:00:00Z");
      const { customer, subscription } = await activeSubscriber(ctx, basic.id);
      clock.advance(10 * DAY);
      const change = { subscriptionId: subscription.id, planId: big.id };
      const quoted = (await quotePlanChange(database.db, ctx, change)).payableCents;
      clock.advance(waited);
      const now = (await quotePlanChange(database.db, ctx, change)).chargeCents;
      expect(now).toBeLessThan(quoted);
      await applyPayment(ctx, admin, {
        customerId: customer.id,
        method: "mpesa_stk",
        provider: "mpesa",
        providerRef: `HELD${customer.id}`,
        amountCents: quoted,
      });
      const done = await changePlan(ctx, admin, { ...change, paidCents: quoted });
      expect(done.chargeCents).toBe(held ? quoted : now);
      expect(await ledgerSum(database.db, customer.id)).toBe(held ? 0 : quoted - now);
    }
  });

  it("an upgrade paid seconds after its quote is charged what was paid even when the rest of the period got a shilling dearer meanwhile", async () => {
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
    // No shilling left owing: no bill to be reminded of, no suspension for having paid what was asked.
    expect(done.chargeCents).toBe(quoted);
    expect(await ledgerSum(database.db, customer.id)).toBe(0);
  });

  it("any upgrade quote paid within the hold settles the change in full, whatever the plans and the instant", async () => {
    const { ctx } = billingContext(database.db, new FakeClock("2026-04-02T12:00:00Z"));
    const base = await createPlan(database.db, { priceCents: 100_000, periodUnit: "days", periodCount: 30 });
    const { subscription } = await activeSubscriber(ctx, base.id);
    const start = subscription.currentPeriodStart.getTime();
    const total = subscription.currentPeriodEnd.getTime() - start;
    const length = fc.constantFrom(
      { periodUnit: "hours" as const, periodCount: 6 },
      { periodUnit: "days" as const, periodCount: 1 },
      { periodUnit: "days" as const, periodCount: 7 },
      { periodUnit: "days" as const, periodCount: 30 },
      { periodUnit: "months" as const, periodCount: 1 },
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 5_000_000 }),
        fc.integer({ min: 0, max: 5_000_000 }),
        length,
        fc.integer({ min: 0, max: total }),
        fc.integer({ min: 0, max: QUOTE_HOLD_MS }),
        (fromPrice, toPrice, toLength, quotedAfter, paidAfter) => {
          const from = { ...base, priceCents: fromPrice };
          const to = { ...base, id: base.id + 1, priceCents: toPrice, ...toLength };
          const quotedAt = new Date(start + quotedAfter);
          const quote = quoteFrom(ctx, subscription, from, to, 0, quotedAt);
          if (quote.kind !== "upgrade") return;
          const paidAt = new Date(quotedAt.getTime() + paidAfter);
          const done = heldQuote(ctx, subscription, from, to, quote.payableCents, quote.payableCents, paidAt);
          if (done.kind === "upgrade" && done.effectiveAt.getTime() === paidAt.getTime())
            expect(done.chargeCents).toBe(quote.payableCents);
        },
      ),
    );
  });

  it("a downgrade waits for the period end, and the next period is billed at the new price", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-04-03T00:00:00Z"));
    const big = await createPlan(database.db, { priceCents: 400_000 });
    const small = await createPlan(database.db, { priceCents: 150_000 });
    const { customer, subscription } = await activeSubscriber(ctx, big.id);
    clock.advance(5 * DAY);
    const quote = await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: small.id });
    expect(quote.kind).toBe("downgrade");
    expect(quote.effectiveAt.toISOString()).toBe(subscription.currentPeriodEnd.toISOString());
    expect(await sub(subscription.id)).toMatchObject({ planId: big.id, nextPlanId: small.id });

    clock.set(new Date(subscription.currentPeriodEnd.getTime() - DAY));
    await issueRecurringInvoices(ctx, job);
    const next = (
      await database.db.select().from(invoices).where(eq(invoices.subscriptionId, subscription.id))
    ).find((i) => i.periodStart?.getTime() === subscription.currentPeriodEnd.getTime());
    expect(next?.amountCents).toBe(150_000);
    await applyPayment(ctx, admin, {
      customerId: customer.id,
      method: "cash",
      provider: "cash",
      providerRef: `dn-${customer.id}`,
      amountCents: 150_000,
    });
    clock.set(new Date(subscription.currentPeriodEnd.getTime() + HOUR));
    await issueRecurringInvoices(ctx, job);
    expect(await sub(subscription.id)).toMatchObject({ planId: small.id, nextPlanId: null });
  });

  it("a downgrade between monthly plans keeps a month-end billing day through a short month", async () => {
    // Activated on 31 January: the first period ends on 28 February, the next on 31 March.
    const { ctx, clock } = billingContext(database.db, new FakeClock("2027-01-31T08:00:00Z"));
    const fast = await createPlan(database.db, { priceCents: 200_000 });
    const basic = await createPlan(database.db, { priceCents: 100_000 });
    const { customer, subscription } = await activeSubscriber(ctx, fast.id);
    expect(subscription.currentPeriodEnd.toISOString()).toBe("2027-02-28T08:00:00.000Z");
    clock.set(new Date("2027-02-10T08:00:00Z"));
    await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: basic.id });
    clock.set(new Date("2027-02-26T08:00:00Z"));
    await issueRecurringInvoices(ctx, job);
    await applyPayment(ctx, admin, {
      customerId: customer.id,
      method: "cash",
      provider: "cash",
      providerRef: `me-${customer.id}`,
      amountCents: 100_000,
    });
    clock.set(new Date("2027-02-28T09:00:00Z"));
    await issueRecurringInvoices(ctx, job);
    const rolled = await sub(subscription.id);
    expect(rolled).toMatchObject({ planId: basic.id, nextPlanId: null });
    expect(rolled.currentPeriodEnd.toISOString()).toBe("2027-03-31T08:00:00.000Z");
    const [paid] = await database.db
      .select()
      .from(invoices)
      .where(
        and(
          eq(invoices.subscriptionId, subscription.id),
          eq(invoices.periodStart, rolled.currentPeriodStart),
        ),
      );
    expect(paid!.periodEnd).toEqual(rolled.currentPeriodEnd);
    // And the billing day stays the month's end after that.
    clock.set(new Date("2027-03-30T08:00:00Z"));
    await issueRecurringInvoices(ctx, job);
    const [april] = await database.db
      .select()
      .from(invoices)
      .where(
        and(eq(invoices.subscriptionId, subscription.id), eq(invoices.periodStart, rolled.currentPeriodEnd)),
      );
    expect(april!.periodEnd!.toISOString()).toBe("2027-04-30T08:00:00.000Z");
  });

  it("an immediate downgrade (when configured) credits the unused difference", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-04-04T00:00:00Z"), {
      downgradeMode: "immediate",
    });
    const big = await createPlan(database.db, { priceCents: 300_000, periodUnit: "days", periodCount: 30 });
    const small = await createPlan(database.db, { priceCents: 150_000, periodUnit: "days", periodCount: 30 });
    const { customer, subscription } = await activeSubscriber(ctx, big.id);
    clock.advance(20 * DAY);
    const quote = await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: small.id });
    expect(quote.creditCents).toBe(50_000);
    expect((await sub(subscription.id)).planId).toBe(small.id);
    expect(await ledgerSum(database.db, customer.id)).toBe(50_000);
  });

  it("refuses a plan of another kind and the plan already held, changing nothing", async () => {
    const { ctx } = billingContext(database.db, new FakeClock("2026-04-05T00:00:00Z"));
    const home = await createPlan(database.db, { priceCents: 100_000 });
    const hotspot = await createPlan(database.db, {
      priceCents: 5_000,
      kind: "hotspot",
      periodUnit: "hours",
      periodCount: 24,
    });
    const { customer, subscription } = await activeSubscriber(ctx, home.id);
    await expect(
      changePlan(ctx, admin, { subscriptionId: subscription.id, planId: hotspot.id }),
    ).rejects.toThrow(/same kind/);
    await expect(
      changePlan(ctx, admin, { subscriptionId: subscription.id, planId: home.id }),
    ).rejects.toThrow(/already on that plan/);
    expect(await ledgerSum(database.db, customer.id)).toBe(0);
  });

  it("over random sequences of plan changes the ledger holds exactly the quoted charges and credits", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-04-06T00:00:00Z"), {
      downgradeMode: "immediate",
    });
    const prices = [99_900, 150_000, 233_333, 300_001, 1_000_000];
    const planIds: number[] = [];
    for (const priceCents of prices)
      planIds.push((await createPlan(database.db, { priceCents, periodUnit: "days", periodCount: 30 })).id);
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            plan: fc.integer({ min: 0, max: prices.length - 1 }),
            after: fc.integer({ min: 0, max: 5 * DAY }),
          }),
          {
            minLength: 1,
            maxLength: 6,
          },
        ),
        async (changes) => {
          clock.set("2026-04-06T00:00:00Z");
          const { customer, subscription } = await activeSubscriber(ctx, planIds[0]!);
          let expected = 0;
          let current = planIds[0]!;
          for (const change of changes) {
            clock.advance(change.after);
            const target = planIds[change.plan]!;
            if (target === current) continue;
            const quote = await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: target });
            expected += quote.creditCents - quote.chargeCents;
            current = target;
          }
          expect(await ledgerSum(database.db, customer.id)).toBe(expected);
        },
      ),
      { numRuns: 15 },
    );
  });

  it("over random plan changes after the next period's bill is out, that period costs and lasts what its plan says", async () => {
    const plans = await Promise.all(
      [
        { priceCents: 100_000, periodUnit: "days" as const, periodCount: 30 },
        { priceCents: 200_000, periodUnit: "days" as const, periodCount: 30 },
        { priceCents: 70_000, periodUnit: "days" as const, periodCount: 7 },
        { priceCents: 250_000, periodUnit: "months" as const, periodCount: 1 },
        { priceCents: 3_000, periodUnit: "hours" as const, periodCount: 24 },
      ].map((p) => createPlan(database.db, p)),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.boolean(),
        fc.array(
          fc.record({
            plan: fc.integer({ min: 0, max: plans.length - 1 }),
            after: fc.integer({ min: 0, max: HOUR }),
          }),
          { minLength: 1, maxLength: 5 },
        ),
        async (immediateDowngrades, changes) => {
          const { ctx, clock } = billingContext(database.db, new FakeClock("2027-01-30T09:00:00Z"), {
            downgradeMode: immediateDowngrades ? "immediate" : "period_end",
          });
          const { customer, subscription } = await activeSubscriber(ctx, plans[1]!.id);
          const periodEnd = (await sub(subscription.id)).currentPeriodEnd;
          clock.set(new Date(periodEnd.getTime() - 2 * DAY));
          await issueRecurringInvoices(ctx, job);
          let nextPlan = plans[1]!;
          for (const change of changes) {
            clock.advance(change.after);
            const target = plans[change.plan]!;
            if (target.id === (await sub(subscription.id)).planId) continue;
            await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: target.id });
            nextPlan = target;
          }
          const [next] = await database.db
            .select()
            .from(invoices)
            .where(and(eq(invoices.subscriptionId, subscription.id), eq(invoices.periodStart, periodEnd)));
          const bills = await database.db.select().from(invoices).where(eq(invoices.customerId, customer.id));
          const topUps = bills
            .filter(
              (i) =>
                i.kind === "proration" && i.status !== "void" && i.dueAt.getTime() === next!.dueAt.getTime(),
            )
            .reduce((sum, i) => sum + i.amountCents, 0);
          const credits = await database.db
            .select()
            .from(ledgerEntries)
            .where(eq(ledgerEntries.invoiceId, next!.id));
          const creditCents = credits
            .filter((l) => l.kind === "credit")
            .reduce((sum, l) => sum + l.amountCents, 0);
          expect(next!.amountCents + topUps - creditCents).toBe(nextPlan.priceCents);

          // Paid up, the next period starts on that plan and lasts one of its periods.
          const owed = -(await ledgerSum(database.db, customer.id));
          if (owed > 0)
            await applyPayment(ctx, admin, {
              customerId: customer.id,
              method: "cash",
              provider: "cash",
              providerRef: `all-${customer.id}`,
              amountCents: owed,
            });
          clock.set(new Date(periodEnd.getTime() + MINUTE));
          await issueRecurringInvoices(ctx, job);
          const rolled = await sub(subscription.id);
          expect(rolled.planId).toBe(nextPlan.id);
          expect(rolled.currentPeriodStart).toEqual(periodEnd);
          expect(rolled.currentPeriodEnd).toEqual(periodAt(periodEnd, nextPlan, 0, ctx.settings).end);
          const [paidNext] = await database.db.select().from(invoices).where(eq(invoices.id, next!.id));
          expect(paidNext!.periodEnd).toEqual(rolled.currentPeriodEnd);
        },
      ),
      { numRuns: 25 },
    );
  });

  describe("cancelling after a plan change that repriced the next period", () => {
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
    const openBills = async (customerId: number) =>
      (await database.db.select().from(invoices).where(eq(invoices.customerId, customerId))).filter(
        (i) => i.status === "open",
      );

    /**
     * Plans of KES 1,000 and 2,000 for 30 days, a subscriber on `from` whose next period, issued on
     * day 27, is paid ahead in cash; then a plan change to `to`.
     */
    async function changedAfterPayingAhead(from: "basic" | "fast", to: "basic" | "fast", extraCents = 0) {
      const { ctx, clock } = billingContext(database.db, new FakeClock("2026-05-01T00:00:00Z"));
      const plans = {
        basic: await createPlan(database.db, { priceCents: 100_000, periodUnit: "days", periodCount: 30 }),
        fast: await createPlan(database.db, { priceCents: 200_000, periodUnit: "days", periodCount: 30 }),
      };
      const { customer, subscription } = await activeSubscriber(ctx, plans[from].id);
      clock.advance(27 * DAY);
      await issueRecurringInvoices(ctx, job);
      await cash(ctx, customer.id, plans[from].priceCents, `ahead-${customer.id}`);
      if (extraCents > 0) await cash(ctx, customer.id, extraCents, `credit-${customer.id}`);
      await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: plans[to].id });
      return { ctx, clock, customer, subscription };
    }

    it("an upgrade: the next period's bill at the new price is voided too, and all of it comes back", async () => {
      const { ctx, clock, customer, subscription } = await changedAfterPayingAhead("basic", "fast", 500_000);
      const charged = (
        await database.db.select().from(invoices).where(eq(invoices.subscriptionId, subscription.id))
      )
        .filter((i) => i.kind === "proration" && i.dueAt <= clock.now())
        .reduce((sum, i) => sum + i.amountCents, 0);
      expect(charged).toBeGreaterThan(0);

      await cancelSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "moving away" });
      // Paid: the first period, the next one ahead, and credit. Served: the first period and the
      // upgrade's days of it. Everything else is credit again; nothing is owed.
      expect(await ledgerSum(database.db, customer.id)).toBe(100_000 + 100_000 + 500_000 - 100_000 - charged);
      expect(await openBills(customer.id)).toEqual([]);
    });

    it("a scheduled downgrade: its credit on the voided next period is taken back", async () => {
      const { ctx, customer, subscription } = await changedAfterPayingAhead("fast", "basic");
      // The next period was paid at the old price: the difference is credit.
      expect(await ledgerSum(database.db, customer.id)).toBe(100_000);

      await cancelSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "moving away" });
      // The next period's whole price is back; its downgrade credit is not counted twice.
      expect(await ledgerSum(database.db, customer.id)).toBe(200_000);
      expect(await openBills(customer.id)).toEqual([]);
    });
  });
});

describe("a plan change to a plan with a shorter period", () => {
  it("an upgrade from a 30-day plan to a weekly one with 20 days left pays for 20 days at the weekly rate", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-04-01T06:00:00Z"));
    const monthly = await createPlan(database.db, {
      priceCents: 100_000,
      periodUnit: "days",
      periodCount: 30,
    });
    // KES 1,200 a week: KES 3,429 for 20 days.
    const weekly = await createPlan(database.db, { priceCents: 120_000, periodUnit: "days", periodCount: 7 });
    const { customer, subscription } = await activeSubscriber(ctx, monthly.id);
    clock.advance(10 * DAY);
    const quote = await quotePlanChange(database.db, ctx, {
      subscriptionId: subscription.id,
      planId: weekly.id,
    });
    const done = await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: weekly.id });
    const after = await sub(subscription.id);
    // The weekly plan is served until the end of the period already paid for: 20 more days.
    const servedDays = (after.currentPeriodEnd.getTime() - clock.now().getTime()) / DAY;
    expect(after.planId).toBe(weekly.id);
    // 20 days of the weekly plan (KES 3,429) less the unused 20 days of the monthly one (KES 667).
    const expected = Math.round((120_000 * servedDays) / 7 / 100) * 100 - 66_700;
    expect(quote.chargeCents).toBe(expected);
    expect(done.chargeCents).toBe(expected);
    expect(await ledgerSum(database.db, customer.id)).toBe(-expected);
  });

  it("an immediate downgrade to a daily plan dearer by the day credits nothing and is not free", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-04-01T06:00:00Z"), {
      downgradeMode: "immediate",
    });
    const monthly = await createPlan(database.db, {
      priceCents: 300_000,
      periodUnit: "days",
      periodCount: 30,
    });
    // KES 200 a day: KES 6,000 for 30 days, twice the monthly price.
    const daily = await createPlan(database.db, { priceCents: 20_000, periodUnit: "days", periodCount: 1 });
    const { customer, subscription } = await activeSubscriber(ctx, monthly.id);
    clock.advance(10 * DAY);
    const done = await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: daily.id });
    const after = await sub(subscription.id);
    const servedDays = (after.currentPeriodEnd.getTime() - clock.now().getTime()) / DAY;
    // 20 days of the daily plan cost KES 4,000; the unused 20 days of the monthly one are worth KES 2,000.
    expect(after.planId).toBe(daily.id);
    expect(servedDays).toBe(20);
    expect(done.creditCents).toBe(0);
    // Actual: a credit of KES 1,800 for taking a dearer plan for 20 days.
    expect(await ledgerSum(database.db, customer.id)).toBeLessThanOrEqual(-(400_000 - 200_000));
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
