import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sendReminders, suspendOverdue } from "../../src/billing/dunning.ts";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { billingJobs } from "../../src/billing/jobs.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { DAY, FakeClock, HOUR } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import {
  invoices,
  jobRuns,
  messageOutbox,
  provisioningOutbox,
  subscriptions,
} from "../../src/db/schema/index.ts";
import { runJob } from "../../src/jobs/runner.ts";
import {
  activeSubscriber,
  admin,
  billingContext,
  count,
  createPlan,
  job,
  ledgerSum,
} from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

async function subscription(id: number) {
  const [row] = await database.db.select().from(subscriptions).where(eq(subscriptions.id, id));
  return row!;
}

describe("the invoice run", () => {
  it("issues the next period's invoice once, however often it runs", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-05-01T08:00:00Z"));
    const plan = await createPlan(database.db, { priceCents: 250_000 });
    const { customer, subscription: sub } = await activeSubscriber(ctx, plan.id);

    clock.set(new Date(sub.currentPeriodEnd.getTime() - 3 * DAY));
    const first = await issueRecurringInvoices(ctx, job);
    expect(first.issued).toBeGreaterThanOrEqual(1);
    const second = await issueRecurringInvoices(ctx, job);
    expect(second.issued).toBe(0);
    clock.advance(HOUR);
    expect((await issueRecurringInvoices(ctx, job)).issued).toBe(0);

    const mine = await database.db
      .select()
      .from(invoices)
      .where(eq(invoices.subscriptionId, sub.id))
      .orderBy(invoices.id);
    expect(mine).toHaveLength(2);
    expect(mine[1]).toMatchObject({ kind: "recurring", amountCents: 250_000, status: "open" });
    expect(mine[1]!.periodStart!.toISOString()).toBe(sub.currentPeriodEnd.toISOString());
    expect(mine[1]!.dueAt.toISOString()).toBe(sub.currentPeriodEnd.toISOString());
    expect(await ledgerSum(database.db, customer.id)).toBe(-250_000);
  });

  it("moves a paid subscription into its next period and leaves an unpaid one for dunning", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-05-02T08:00:00Z"));
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const payer = await activeSubscriber(ctx, plan.id, "Payer");
    const debtor = await activeSubscriber(ctx, plan.id, "Debtor");
    clock.set(new Date(payer.subscription.currentPeriodEnd.getTime() - DAY));
    await issueRecurringInvoices(ctx, job);
    await applyPayment(ctx, admin, {
      customerId: payer.customer.id,
      method: "cash",
      provider: "cash",
      providerRef: `renew-${payer.customer.id}`,
      amountCents: 100_000,
    });

    clock.set(new Date(payer.subscription.currentPeriodEnd.getTime() + HOUR));
    await issueRecurringInvoices(ctx, job);
    const rolled = await subscription(payer.subscription.id);
    expect(rolled.periodIndex).toBe(1);
    expect(rolled.currentPeriodStart.toISOString()).toBe(payer.subscription.currentPeriodEnd.toISOString());
    const waiting = await subscription(debtor.subscription.id);
    expect(waiting.periodIndex).toBe(0);
  });

  it("pays the new invoices from credit already held: in full, in part, not at all without credit", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-05-03T08:00:00Z"));
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const prepaid = await activeSubscriber(ctx, plan.id, "Prepaid");
    const partly = await activeSubscriber(ctx, plan.id, "Partly");
    const owing = await activeSubscriber(ctx, plan.id, "Owing");
    for (const [who, amountCents] of [
      [prepaid, 150_000],
      [partly, 40_000],
    ] as const)
      await applyPayment(ctx, admin, {
        customerId: who.customer.id,
        method: "cash",
        provider: "cash",
        providerRef: `ahead-${who.customer.id}`,
        amountCents,
      });

    clock.set(new Date(prepaid.subscription.currentPeriodEnd.getTime() - DAY));
    const run = await issueRecurringInvoices(ctx, job);
    expect(run.settled).toBe(1);
    const renewal = async (sub: typeof prepaid.subscription) => {
      const [row] = await database.db
        .select()
        .from(invoices)
        .where(and(eq(invoices.subscriptionId, sub.id), eq(invoices.periodStart, sub.currentPeriodEnd)));
      return row!;
    };
    expect(await renewal(prepaid.subscription)).toMatchObject({ status: "paid", paidCents: 100_000 });
    expect(await renewal(partly.subscription)).toMatchObject({ status: "open", paidCents: 40_000 });
    expect(await renewal(owing.subscription)).toMatchObject({ status: "open", paidCents: 0 });
    expect(await ledgerSum(database.db, prepaid.customer.id)).toBe(50_000);
  });
});

describe("dunning", () => {
  it("reminds 3 days and 1 day before and on the due day, suspends after the grace day, each step once", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-06-01T08:00:00Z"));
    const plan = await createPlan(database.db, { priceCents: 300_000 });
    const { customer, subscription: sub } = await activeSubscriber(ctx, plan.id);
    const due = sub.currentPeriodEnd.getTime();
    const reminders = () =>
      database.db
        .select()
        .from(messageOutbox)
        .where(
          and(eq(messageOutbox.recipient, customer.phone), eq(messageOutbox.template, "invoice_reminder")),
        );

    clock.set(new Date(due - 4 * DAY));
    await issueRecurringInvoices(ctx, job);
    for (const [offset, expected] of [
      [-3 * DAY, 1],
      [-2 * DAY, 1],
      [-1 * DAY, 2],
      [0, 3],
      [12 * HOUR, 3],
    ] as const) {
      clock.set(new Date(due + offset));
      // Two runs at every instant: the second must change nothing.
      await sendReminders(ctx, job);
      await sendReminders(ctx, job);
      expect((await reminders()).length, `at ${offset / DAY} days`).toBe(expected);
    }
    expect((await reminders()).map((m) => m.params.days)).toEqual([3, 1, 0]);
    expect((await subscription(sub.id)).status).toBe("active");

    clock.set(new Date(due + DAY + HOUR));
    expect((await suspendOverdue(ctx, job)).suspended).toBeGreaterThanOrEqual(1);
    expect((await suspendOverdue(ctx, job)).suspended).toBe(0);
    const suspended = await subscription(sub.id);
    expect(suspended).toMatchObject({ status: "suspended", suspendedReason: "dunning" });
    expect(
      await count(
        database.db,
        sql`select count(*)::int as n from provisioning_outbox where subscription_id = ${sub.id} and action = 'suspend'`,
      ),
    ).toBe(1);
    expect(
      await count(
        database.db,
        sql`select count(*)::int as n from message_outbox where recipient = ${customer.phone} and template = 'suspended'`,
      ),
    ).toBe(1);

    // Paying brings the service back, with a fresh period from the moment of payment.
    clock.advance(3 * DAY);
    const paid = await applyPayment(ctx, admin, {
      customerId: customer.id,
      method: "mpesa_stk",
      provider: "mpesa",
      providerRef: `late-${customer.id}`,
      amountCents: 300_000,
    });
    expect(paid.restoredSubscriptionIds).toEqual([sub.id]);
    const restored = await subscription(sub.id);
    expect(restored.status).toBe("active");
    expect(restored.currentPeriodStart.toISOString()).toBe(clock.now().toISOString());
    const actions = await database.db
      .select({ action: provisioningOutbox.action })
      .from(provisioningOutbox)
      .where(eq(provisioningOutbox.subscriptionId, sub.id))
      .orderBy(provisioningOutbox.id);
    expect(actions.map((a) => a.action).slice(-2)).toEqual(["suspend", "restore"]);
  });

  it("a late job sends only the latest reminder that is due", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-06-05T08:00:00Z"));
    const plan = await createPlan(database.db, { priceCents: 120_000 });
    const { customer, subscription: sub } = await activeSubscriber(ctx, plan.id);
    clock.set(new Date(sub.currentPeriodEnd.getTime() - 4 * DAY));
    await issueRecurringInvoices(ctx, job);
    clock.set(new Date(sub.currentPeriodEnd.getTime() - 12 * HOUR));
    await sendReminders(ctx, job);
    const sent = await database.db
      .select()
      .from(messageOutbox)
      .where(
        and(eq(messageOutbox.recipient, customer.phone), eq(messageOutbox.template, "invoice_reminder")),
      );
    expect(sent.map((m) => m.params.days)).toEqual([1]);
  });

  it("a renewal issued late, after the service was down past its due date, gets its grace day from then", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-06-09T08:00:00Z"));
    const plan = await createPlan(database.db, { priceCents: 140_000 });
    const { customer, subscription: sub } = await activeSubscriber(ctx, plan.id);
    // Nothing ran from three days before the period end until two days after it.
    clock.set(new Date(sub.currentPeriodEnd.getTime() + 2 * DAY));
    expect((await issueRecurringInvoices(ctx, job)).issued).toBeGreaterThanOrEqual(1);
    await sendReminders(ctx, job);
    await suspendOverdue(ctx, job);
    // Told that the bill is past due, but not cut off by a bill they have only just been sent.
    expect((await subscription(sub.id)).status).toBe("active");
    const told = await database.db
      .select()
      .from(messageOutbox)
      .where(
        and(eq(messageOutbox.recipient, customer.phone), eq(messageOutbox.template, "invoice_reminder")),
      );
    expect(told).toHaveLength(1);

    clock.advance(DAY - HOUR);
    await suspendOverdue(ctx, job);
    expect((await subscription(sub.id)).status).toBe("active");
    clock.advance(2 * HOUR);
    await suspendOverdue(ctx, job);
    expect(await subscription(sub.id)).toMatchObject({ status: "suspended", suspendedReason: "dunning" });
  });

  it("an admin-suspended subscriber is neither reminded nor restored by paying", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-06-07T08:00:00Z"));
    const { suspendSubscription } = await import("../../src/billing/suspend-resume.ts");
    const plan = await createPlan(database.db, { priceCents: 120_000 });
    const { customer, subscription: sub } = await activeSubscriber(ctx, plan.id);
    await suspendSubscription(ctx, admin, { subscriptionId: sub.id, reason: "abuse report" });
    clock.set(new Date(sub.currentPeriodEnd.getTime() - DAY));
    await issueRecurringInvoices(ctx, job);
    await sendReminders(ctx, job);
    const paid = await applyPayment(ctx, admin, {
      customerId: customer.id,
      method: "cash",
      provider: "cash",
      providerRef: `adm-${customer.id}`,
      amountCents: 120_000,
    });
    expect(paid.restoredSubscriptionIds).toEqual([]);
    expect((await subscription(sub.id)).status).toBe("suspended");
  });
});

describe("scheduled jobs", () => {
  it("every run is recorded with its counts, and a second run finds nothing to do", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-07-01T08:00:00Z"));
    const plan = await createPlan(database.db, { priceCents: 90_000 });
    const { subscription: sub } = await activeSubscriber(ctx, plan.id);
    clock.set(new Date(sub.currentPeriodEnd.getTime() - DAY));
    const invoicing = billingJobs.find((j) => j.name === "invoicing")!;
    const first = await runJob(database.db, clock, "invoicing", (tx) => invoicing.run(tx, ctx));
    const second = await runJob(database.db, clock, "invoicing", (tx) => invoicing.run(tx, ctx));
    expect(first.status).toBe("ok");
    expect(first.counts.issued).toBeGreaterThanOrEqual(1);
    expect(second).toMatchObject({ status: "ok", counts: { issued: 0 } });
    const runs = await database.db.select().from(jobRuns).where(eq(jobRuns.job, "invoicing"));
    expect(runs.length).toBeGreaterThanOrEqual(2);
  });

  it("a failing job rolls back its work and records the failure", async () => {
    const { clock } = billingContext(database.db);
    const result = await runJob(database.db, clock, "broken", async (tx) => {
      await tx.execute(
        sql`insert into audit_log (actor_kind, actor_id, action, entity, entity_id, at) values ('system','broken','x','y','1', now())`,
      );
      throw new Error("router table missing");
    });
    expect(result).toMatchObject({ status: "failed", error: "router table missing" });
    expect(
      await count(database.db, sql`select count(*)::int as n from audit_log where actor_id = 'broken'`),
    ).toBe(0);
    expect(
      await count(
        database.db,
        sql`select count(*)::int as n from job_runs where job = 'broken' and status = 'failed'`,
      ),
    ).toBe(1);
  });
});
