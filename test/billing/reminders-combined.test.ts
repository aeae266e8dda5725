import { and, asc, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sendReminders, suspendOverdue } from "../../src/billing/dunning.ts";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { changePlan } from "../../src/billing/plan-change.ts";
import { setCustomerLanguage } from "../../src/billing/preferences.ts";
import { randomPassword, startSubscriptionInTx } from "../../src/billing/subscriptions.ts";
import { DAY, FakeClock, HOUR } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import {
  customers,
  dunningSteps,
  invoices,
  messageOutbox,
  subscriptions,
} from "../../src/db/schema/index.ts";
import { type Language, renderSms } from "../../src/messaging/render.ts";
import { activeSubscriber, admin, billingContext, createPlan, job } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";

/**
 * An upgrade taken while the next period's bill waits leaves two bills open on the subscription:
 * the renewal and the top-up to the new price. The subscriber is reminded once per step, of what
 * they must pay by then, not once per bill.
 */
let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

const signing = { isp: "Kibera Net", paybill: "400200" };

async function upgradedWithRenewalWaiting(
  start: string,
  language: Language,
  upgradeDaysBefore: number,
  settings: Parameters<typeof billingContext>[2] = {},
) {
  const { ctx, clock } = billingContext(database.db, new FakeClock(start), settings);
  const plan = await createPlan(database.db, { priceCents: 150_000 });
  const bigger = await createPlan(database.db, { priceCents: 300_000 });
  const { customer, subscription } = await activeSubscriber(ctx, plan.id);
  await setCustomerLanguage(ctx, admin, { customerId: customer.id, language });
  const due = subscription.currentPeriodEnd.getTime();
  clock.set(new Date(due - 4 * DAY));
  await issueRecurringInvoices(ctx, job);
  const reminders = async () => {
    const rows = await database.db
      .select()
      .from(messageOutbox)
      .where(and(eq(messageOutbox.recipient, customer.phone), eq(messageOutbox.template, "invoice_reminder")))
      .orderBy(asc(messageOutbox.id));
    return rows.map((m) => ({
      ...m.params,
      text: renderSms(m.language as Language, m.template, m.params, signing),
    }));
  };
  const remindAt = async (at: number) => {
    clock.set(new Date(at));
    // Two runs: the second must send nothing more.
    await sendReminders(ctx, job);
    await sendReminders(ctx, job);
    return reminders();
  };
  if (upgradeDaysBefore < 3) await remindAt(due - 3 * DAY + HOUR);
  clock.set(new Date(due - upgradeDaysBefore * DAY));
  const quote = await changePlan(ctx, admin, { subscriptionId: subscription.id, planId: bigger.id });
  const bills = await database.db
    .select()
    .from(invoices)
    .where(and(eq(invoices.subscriptionId, subscription.id), eq(invoices.status, "open")))
    .orderBy(asc(invoices.dueAt), asc(invoices.id));
  // The upgrade's charge for the rest of this period, then the renewal and its top-up, due together.
  expect(bills.map((b) => [b.kind, b.amountCents, b.dueAt.getTime()])).toEqual([
    ["proration", quote.chargeCents, due - upgradeDaysBefore * DAY],
    ["recurring", 150_000, due],
    ["proration", 150_000, due],
  ]);
  const payCharge = () =>
    applyPayment(ctx, admin, {
      customerId: customer.id,
      method: "cash",
      provider: "cash",
      providerRef: `upgrade-${customer.id}`,
      amountCents: quote.chargeCents,
    });
  return { customer, due, quote, reminders, remindAt, payCharge };
}

/**
 * A subscriber of 1,500 a month since 2 Aug 2026 08:00, and a second subscription of 2,000 a month
 * on the same account from `secondAt`, paid in cash.
 */
async function twoSubscriptions(secondAt: string) {
  const { ctx, clock } = billingContext(database.db, new FakeClock("2026-08-02T08:00:00Z"));
  const first = await createPlan(database.db, { priceCents: 150_000 });
  const second = await createPlan(database.db, { priceCents: 200_000 });
  const { customer, subscription: sub1 } = await activeSubscriber(ctx, first.id);
  clock.set(new Date(Date.parse(secondAt)));
  const [row] = await database.db.select().from(customers).where(eq(customers.id, customer.id));
  const started = await database.db.transaction((tx) =>
    startSubscriptionInTx(tx, ctx, admin, row!, second, {
      routerId: null,
      networkUsername: `${customer.accountNumber.toLowerCase()}-2`,
      networkPassword: randomPassword(),
    }),
  );
  await applyPayment(ctx, admin, {
    customerId: customer.id,
    method: "cash",
    provider: "cash",
    providerRef: `second-${customer.id}`,
    amountCents: 200_000,
  });
  return { ctx, clock, customer, sub1, started };
}

describe("reminders with a top-up and the renewal both open", () => {
  const when: Record<Language, Record<number, string>> = {
    en: { 3: "in 3 days", 1: "tomorrow", 0: "today" },
    sw: { 3: "baada ya siku 3", 1: "kesho", 0: "leo" },
  };
  const texts: Record<Language, (amount: string, account: string, date: string, days: number) => string> = {
    en: (amount, account, date, days) =>
      `Kibera Net: ${amount} for account ${account} is due ${when.en[days]}, ${date}. Pay by M-Pesa, paybill 400200, account ${account}.`,
    sw: (amount, account, date, days) =>
      `Kibera Net: ${amount} ya akaunti ${account} inapaswa kulipwa ${when.sw[days]}, tarehe ${date}. Lipa kwa M-Pesa, paybill 400200, akaunti ${account}.`,
  };

  it.each([
    ["en", "2026-08-02T08:00:00Z", "2 Sep 2026"],
    ["sw", "2026-08-03T08:00:00Z", "3 Sep 2026"],
  ] as const)("one SMS per step, for the two together (%s)", async (language, start, dueDate) => {
    const { customer, due, remindAt, payCharge } = await upgradedWithRenewalWaiting(start, language, 4);
    await payCharge();

    const sent = [];
    for (const offset of [-3 * DAY, -DAY, 0]) {
      const now = await remindAt(due + offset + HOUR);
      expect(now.length, `at ${offset / DAY} days`).toBe(sent.length + 1);
      sent.push(now.at(-1));
    }
    const account = customer.accountNumber;
    expect(sent).toEqual(
      [3, 1, 0].map((days) => ({
        amountCents: 300_000,
        dueAt: new Date(due).toISOString().replace(".000Z", "Z"),
        account,
        days,
        text: texts[language]("KES 3,000", account, dueDate, days),
      })),
    );
  });

  it("bills due on different dates: the SMS names the earliest and all that is due by then", async () => {
    // An ISP giving three days' grace: the charge, unpaid, does not cut the subscriber off before the renewal.
    const { customer, due, quote, remindAt } = await upgradedWithRenewalWaiting(
      "2026-08-04T08:00:00Z",
      "en",
      2,
      { graceDays: 3 },
    );
    const account = customer.accountNumber;
    // 1,500 more a month for 2 of August's 31 days, in whole shillings.
    expect(quote.chargeCents).toBe(9_700);
    // The charge is due today and the top-up's first step is due: one SMS, for the charge.
    const today = await remindAt(due - 2 * DAY + HOUR);
    expect(today.map((m) => m.text)).toEqual([
      texts.en("KES 1,500", account, "4 Sep 2026", 3),
      texts.en("KES 97", account, "2 Sep 2026", 0),
    ]);
    expect((await remindAt(due - 2 * DAY + 12 * HOUR)).length).toBe(2);

    // The renewal and its top-up, and the charge still unpaid from before.
    const dayBefore = await remindAt(due - DAY + HOUR);
    expect(dayBefore.slice(2).map((m) => m.text)).toEqual([texts.en("KES 3,097", account, "4 Sep 2026", 1)]);
  });

  it("two subscriptions renewing an hour apart: each step's one SMS asks for both", async () => {
    // The second subscription, an hour later, paid.
    const { ctx, clock, customer, sub1, started } = await twoSubscriptions("2026-08-02T09:00:00Z");
    const [sub2] = await database.db
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.id, started.subscription.id));
    expect(sub2!.status).toBe("active");

    const due1 = sub1.currentPeriodEnd.getTime();
    const due2 = sub2!.currentPeriodEnd.getTime();
    expect(due2 - due1).toBe(HOUR);

    clock.set(new Date(due1 - 4 * DAY + 2 * HOUR));
    await issueRecurringInvoices(ctx, job);
    const open = await database.db
      .select()
      .from(invoices)
      .where(and(eq(invoices.customerId, customer.id), eq(invoices.status, "open")));
    expect(open.map((i) => i.amountCents).sort()).toEqual([150_000, 200_000]);

    // The daily reminder run, at midday.
    for (const offset of [-3 * DAY, -DAY, 0]) {
      clock.set(new Date(due1 + offset + 2 * HOUR));
      await sendReminders(ctx, job);
    }
    const sent = await database.db
      .select()
      .from(messageOutbox)
      .where(and(eq(messageOutbox.recipient, customer.phone), eq(messageOutbox.template, "invoice_reminder")))
      .orderBy(asc(messageOutbox.id));
    const amounts = sent.map((m) => (m.params as { amountCents: number }).amountCents);
    expect(amounts.length).toBe(3);
    // The later bill's every step is on record as sent: each went in the one SMS of its run.
    const later = open.find((i) => i.amountCents === 200_000)!;
    const steps = await database.db.select().from(dunningSteps).where(eq(dunningSteps.invoiceId, later.id));
    expect(steps.map((s) => [s.step, s.sent]).sort()).toEqual([
      ["remind:-1d", 1],
      ["remind:-3d", 1],
      ["remind:0d", 1],
    ]);
    // Both bills fall due on the day the SMS names: what is owed that day is 3,500, at every step.
    expect(amounts).toEqual([350_000, 350_000, 350_000]);
  });

  it("a subscription suspended for an unpaid bill: the other's reminder asks for that bill too, since a payment pays it first", async () => {
    // A second subscription ten days later, paid.
    const { ctx, clock, customer, sub1, started } = await twoSubscriptions("2026-08-12T08:00:00Z");
    const sub2Id = started.subscription.id;

    // The first renewal goes unpaid past its grace: that subscription is suspended.
    const due1 = sub1.currentPeriodEnd.getTime();
    clock.set(new Date(due1 - 4 * DAY + HOUR));
    await issueRecurringInvoices(ctx, job);
    clock.set(new Date(due1 + 2 * DAY));
    await suspendOverdue(ctx, job);
    const statusOf = async (id: number) =>
      (await database.db.select().from(subscriptions).where(eq(subscriptions.id, id)))[0]!.status;
    expect(await statusOf(sub1.id)).toBe("suspended");

    // The second's renewal, three days before it is due.
    const [sub2] = await database.db.select().from(subscriptions).where(eq(subscriptions.id, sub2Id));
    const due2 = sub2!.currentPeriodEnd.getTime();
    clock.set(new Date(due2 - 4 * DAY + HOUR));
    await issueRecurringInvoices(ctx, job);
    clock.set(new Date(due2 - 3 * DAY + HOUR));
    await sendReminders(ctx, job);
    const [reminder] = await database.db
      .select()
      .from(messageOutbox)
      .where(and(eq(messageOutbox.recipient, customer.phone), eq(messageOutbox.template, "invoice_reminder")))
      .orderBy(asc(messageOutbox.id));
    const asked = (reminder!.params as { amountCents: number }).amountCents;
    // The suspended renewal (1,500) is paid first by any payment, then this one (2,000).
    expect(asked).toBe(350_000);

    // Paying what the SMS asks keeps the second subscription on past its due date.
    await applyPayment(ctx, admin, {
      customerId: customer.id,
      method: "cash",
      provider: "cash",
      providerRef: `reminded-${customer.id}`,
      amountCents: asked,
    });
    clock.set(new Date(due2 + 2 * DAY));
    await suspendOverdue(ctx, job);
    expect(await statusOf(sub2Id)).toBe("active");
  });
});
