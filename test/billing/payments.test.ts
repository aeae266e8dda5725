import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getAccountSummary } from "../../src/billing/accounts.ts";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import type { MessageTemplate } from "../../src/billing/outbox.ts";
import { applyPayment, recordPaymentByReference } from "../../src/billing/payments.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { assignUnmatchedPayment, listUnmatchedPayments } from "../../src/billing/unmatched.ts";
import { DAY } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { invoices, messageOutbox, provisioningOutbox, subscriptions } from "../../src/db/schema/index.ts";
import { isSealed, requireBox } from "../../src/db/sealed.ts";
import { renderSms } from "../../src/messaging/render.ts";
import { admin, billingContext, count, createPlan, ledgerSum, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

describe("signing up and paying", () => {
  it("a new subscriber waits for the first payment, then is activated with a receipt", async () => {
    const { ctx, clock } = billingContext(database.db);
    const plan = await createPlan(database.db, { priceCents: 150_000 });
    const { customer, subscription, invoice } = await createCustomerWithSubscription(ctx, admin, {
      name: "Otieno Ouma",
      phone: uniquePhone(),
      planId: plan.id,
    });
    expect(customer.accountNumber).toMatch(/^TD\d{5}$/);
    expect(subscription.status).toBe("pending");
    expect(invoice.amountCents).toBe(150_000);
    expect((await getAccountSummary(database.db, customer.id, clock.now())).amountDueCents).toBe(150_000);

    clock.advance(2 * DAY);
    const result = await applyPayment(ctx, admin, {
      customerId: customer.id,
      method: "mpesa_stk",
      provider: "mpesa",
      providerRef: "SKA1B2C3D4",
      amountCents: 150_000,
    });
    expect(result.duplicate).toBe(false);
    expect(result.restoredSubscriptionIds).toEqual([subscription.id]);
    const [activated] = await database.db
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.id, subscription.id));
    expect(activated!.status).toBe("active");
    // The period starts when service starts, not when the account was created.
    expect(activated!.currentPeriodStart.toISOString()).toBe(clock.now().toISOString());
    const rows = await database.db
      .select()
      .from(provisioningOutbox)
      .where(eq(provisioningOutbox.subscriptionId, subscription.id));
    expect(rows.map((r) => r.action)).toEqual(["ensure_account", "restore"]);
    const sms = await database.db
      .select()
      .from(messageOutbox)
      .where(eq(messageOutbox.recipient, customer.phone))
      .orderBy(messageOutbox.id);
    // Written in the order things happened, which is the order they are sent in: the receipt, then
    // the activation (not "back on": it was never on), with the credentials the router dials with.
    expect(sms.map((m) => m.template)).toEqual(["welcome", "payment_received", "activated"]);
    expect(sms[2]!.params).toMatchObject({
      username: subscription.networkUsername,
      periodEndAt: activated!.currentPeriodEnd.toISOString(),
    });
    // The password is kept sealed in the outbox as in the subscription; the SMS worker opens it to send.
    const sealed = String(sms[2]!.params.password);
    expect(isSealed(sealed)).toBe(true);
    expect(requireBox().open(sealed)).toBe(subscription.networkPassword);
    expect(JSON.stringify(sms)).not.toContain(subscription.networkPassword);
  });

  it("a receipt names the M-Pesa receipt number only when there is one: not for cash, nor for a push credited before its receipt", async () => {
    const { ctx } = billingContext(database.db);
    const plan = await createPlan(database.db, { priceCents: 150_000 });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Achieng Otieno",
      phone: uniquePhone(),
      planId: plan.id,
    });
    const pay = (method: "cash" | "mpesa_stk", providerRef: string) =>
      applyPayment(ctx, admin, {
        customerId: customer.id,
        method,
        provider: method === "cash" ? "cash" : "mpesa",
        providerRef,
        amountCents: 50_000,
      });
    await pay("mpesa_stk", "SKA1B2C3D5");
    await pay("cash", "tg-confirmation-token");
    await pay("mpesa_stk", "stk:ws_CO_05052026080000999999");
    const receipts = await database.db
      .select()
      .from(messageOutbox)
      .where(eq(messageOutbox.recipient, customer.phone))
      .orderBy(messageOutbox.id);
    const texts = receipts
      .filter((m) => m.template.startsWith("payment_received"))
      .map((m) => renderSms("en", m.template as MessageTemplate, m.params, { isp: "Kibera Net" }));
    expect(texts).toEqual([
      `Kibera Net: We received KES 500 (M-Pesa SKA1B2C3D5) for account ${customer.accountNumber}. Balance: -KES 1,000. Thank you.`,
      `Kibera Net: We received KES 500 for account ${customer.accountNumber}. Balance: -KES 500. Thank you.`,
      `Kibera Net: We received KES 500 for account ${customer.accountNumber}. Balance: KES 0. Thank you.`,
    ]);
  });

  it("the same receipt is credited once, however often it arrives", async () => {
    const { ctx } = billingContext(database.db);
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Akinyi",
      phone: uniquePhone(),
      planId: plan.id,
    });
    const payment = {
      customerId: customer.id,
      method: "mpesa_stk" as const,
      provider: "mpesa",
      providerRef: "RKL51ZDR4F",
      amountCents: 100_000,
    };
    const first = await applyPayment(ctx, admin, payment);
    const again = await applyPayment(ctx, admin, payment);
    expect(again.duplicate).toBe(true);
    expect(again.paymentId).toBe(first.paymentId);
    expect(await ledgerSum(database.db, customer.id)).toBe(0);
  });

  it("a payment larger than the debt leaves credit that pays the next invoice automatically", async () => {
    const { ctx, clock } = billingContext(database.db);
    const plan = await createPlan(database.db, { priceCents: 200_000 });
    const { customer, subscription } = await createCustomerWithSubscription(ctx, admin, {
      name: "Baraka",
      phone: uniquePhone(),
      planId: plan.id,
    });
    await applyPayment(ctx, admin, {
      customerId: customer.id,
      method: "cash",
      provider: "cash",
      providerRef: "c-1",
      amountCents: 500_000,
    });
    expect(await ledgerSum(database.db, customer.id)).toBe(300_000);

    clock.advance(29 * DAY); // within the invoice lead time of the period end
    await issueRecurringInvoices(ctx, admin);
    const issued = await database.db
      .select()
      .from(invoices)
      .where(eq(invoices.subscriptionId, subscription.id))
      .orderBy(invoices.id);
    expect(issued).toHaveLength(2);
    expect(issued[1]!.status).toBe("paid");
    expect(issued[1]!.paidCents).toBe(200_000);
    expect(await ledgerSum(database.db, customer.id)).toBe(100_000);
  });

  it("partial payments settle the oldest invoice first", async () => {
    const { ctx } = billingContext(database.db);
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { customer, invoice } = await createCustomerWithSubscription(ctx, admin, {
      name: "Chebet",
      phone: uniquePhone(),
      planId: plan.id,
    });
    await applyPayment(ctx, admin, {
      customerId: customer.id,
      method: "cash",
      provider: "cash",
      providerRef: "p-1",
      amountCents: 40_000,
    });
    let [row] = await database.db.select().from(invoices).where(eq(invoices.id, invoice.id));
    expect(row).toMatchObject({ status: "open", paidCents: 40_000 });
    await applyPayment(ctx, admin, {
      customerId: customer.id,
      method: "cash",
      provider: "cash",
      providerRef: "p-2",
      amountCents: 60_000,
    });
    [row] = await database.db.select().from(invoices).where(eq(invoices.id, invoice.id));
    expect(row).toMatchObject({ status: "paid", paidCents: 100_000 });
  });
});

describe("paybill payments by account reference", () => {
  it("matches the account typed by the payer, whatever its case, spaces or leading #", async () => {
    const { ctx } = billingContext(database.db);
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Njeri",
      phone: uniquePhone(),
      planId: plan.id,
    });
    const typed = ` #${customer.accountNumber.toLowerCase()} `;
    const result = await recordPaymentByReference(ctx, admin, {
      reference: typed,
      method: "mpesa_c2b",
      provider: "mpesa",
      providerRef: "QWE123RTY1",
      amountCents: 100_000,
    });
    expect(result).toMatchObject({ matched: true, customerId: customer.id, duplicate: false });
    expect(await ledgerSum(database.db, customer.id)).toBe(0);
  });

  it("an unknown account waits in the unmatched queue until an admin assigns it, once", async () => {
    const { ctx } = billingContext(database.db);
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Mwangi",
      phone: uniquePhone(),
      planId: plan.id,
    });
    const result = await recordPaymentByReference(ctx, admin, {
      reference: "NOSUCHACC",
      method: "mpesa_c2b",
      provider: "mpesa",
      providerRef: "ZXC987VBN1",
      amountCents: 100_000,
    });
    expect(result.matched).toBe(false);
    expect((await listUnmatchedPayments(database.db)).map((p) => p.id)).toContain(result.paymentId);
    expect(await ledgerSum(database.db, customer.id)).toBe(-100_000);

    await assignUnmatchedPayment(ctx, admin, {
      paymentId: result.paymentId,
      accountNumber: customer.accountNumber,
    });
    await expect(
      assignUnmatchedPayment(ctx, admin, {
        paymentId: result.paymentId,
        accountNumber: customer.accountNumber,
      }),
    ).rejects.toThrow(/not waiting/);
    expect(await ledgerSum(database.db, customer.id)).toBe(0);
    expect((await listUnmatchedPayments(database.db)).map((p) => p.id)).not.toContain(result.paymentId);
    expect(
      await count(
        database.db,
        sql`select count(*)::int as n from ledger_entries where payment_id = ${result.paymentId}`,
      ),
    ).toBe(1);
  });
});

describe("the account summary a subscriber sees", () => {
  it("shows plan, status, period end, what is due, credit and the last payment", async () => {
    const { ctx, clock } = billingContext(database.db);
    const plan = await createPlan(database.db, { priceCents: 180_000 });
    const { customer, subscription, invoice } = await createCustomerWithSubscription(ctx, admin, {
      name: "Summary",
      phone: uniquePhone(),
      planId: plan.id,
    });
    let summary = await getAccountSummary(database.db, customer.id, clock.now());
    expect(summary).toMatchObject({
      balanceCents: -180_000,
      amountDueCents: 180_000,
      nextChargeCents: 180_000,
      lastPayment: null,
      // Nothing has been paid for yet, so there is no period end to show.
      periodEnd: null,
    });
    expect(summary.plan?.id).toBe(plan.id);
    expect(summary.subscription?.status).toBe("pending");
    expect(summary.nextDueAt?.toISOString()).toBe(invoice.dueAt.toISOString());

    clock.advance(60_000);
    await applyPayment(ctx, admin, {
      customerId: customer.id,
      method: "mpesa_stk",
      provider: "mpesa",
      providerRef: `SUM${customer.id}`,
      amountCents: 200_000,
    });
    summary = await getAccountSummary(database.db, customer.id, clock.now());
    expect(summary).toMatchObject({
      balanceCents: 20_000,
      amountDueCents: 0,
      nextDueAt: null,
      nextChargeCents: 160_000,
    });
    expect(summary.subscription?.status).toBe("active");
    expect(summary.periodEnd?.getTime()).toBeGreaterThan(subscription.currentPeriodEnd.getTime());
    expect(summary.lastPayment).toEqual({
      amountCents: 200_000,
      receivedAt: clock.now(),
      method: "mpesa_stk",
    });
  });
});
