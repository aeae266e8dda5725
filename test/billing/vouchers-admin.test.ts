import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cancelSubscription } from "../../src/billing/cancel-subscription.ts";
import { extendSubscription } from "../../src/billing/extend.ts";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { updatePlan } from "../../src/billing/plans.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { resumeSubscription, suspendSubscription } from "../../src/billing/suspend-resume.ts";
import {
  createVoucherBatch,
  expireVouchers,
  markVouchersSold,
  redeemVoucher,
  sellVoucherInTx,
  VOUCHER_ALPHABET,
} from "../../src/billing/vouchers.ts";
import { DAY, FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import {
  auditLog,
  invoices,
  provisioningOutbox,
  subscriptions,
  vouchers,
} from "../../src/db/schema/index.ts";
import {
  activeSubscriber,
  admin,
  billingContext,
  count,
  createPlan,
  job,
  ledgerSum,
  uniquePhone,
} from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

describe("vouchers", () => {
  it("a batch has unique, unambiguous codes", async () => {
    const { ctx } = billingContext(database.db);
    const plan = await createPlan(database.db, {
      priceCents: 5_000,
      kind: "hotspot",
      periodUnit: "hours",
      periodCount: 24,
    });
    const { codes } = await createVoucherBatch(ctx, admin, { planId: plan.id, quantity: 1_000 });
    expect(new Set(codes).size).toBe(1_000);
    for (const code of codes) {
      expect(code).toMatch(new RegExp(`^[${VOUCHER_ALPHABET}]{8}$`));
      expect(code).not.toMatch(/[01OI]/);
    }
    await expect(createVoucherBatch(ctx, admin, { planId: plan.id, quantity: 0 })).rejects.toThrow(/1 to/);
  });

  it("only hotspot plans have vouchers", async () => {
    const { ctx } = billingContext(database.db);
    const home = await createPlan(database.db, { priceCents: 100_000 });
    await expect(createVoucherBatch(ctx, admin, { planId: home.id, quantity: 5 })).rejects.toThrow(/hotspot/);
  });

  it("sold, redeemed and expired: a voucher sold online goes live, is texted, and expires after its validity", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-08-01T10:00:00Z"));
    const plan = await createPlan(database.db, {
      priceCents: 5_000,
      kind: "hotspot",
      periodUnit: "hours",
      periodCount: 24,
    });
    const phone = uniquePhone();
    const sold = await database.db.transaction((tx) =>
      sellVoucherInTx(tx, ctx, admin, { planId: plan.id, phone, language: "sw" }),
    );
    expect(sold.expiresAt.toISOString()).toBe("2026-08-02T10:00:00.000Z");
    expect(
      await count(
        database.db,
        sql`select count(*)::int as n from provisioning_outbox where voucher_id = ${sold.voucherId} and action = 'ensure_voucher'`,
      ),
    ).toBe(1);
    expect(
      await count(
        database.db,
        sql`select count(*)::int as n from message_outbox where recipient = ${phone} and template = 'voucher_code' and language = 'sw'`,
      ),
    ).toBe(1);

    await redeemVoucher(ctx, admin, { code: sold.code.toLowerCase() });
    await expect(redeemVoucher(ctx, admin, { code: sold.code })).rejects.toThrow(/not a sold/);
    clock.advance(DAY);
    const result = await expireVouchers(ctx, job);
    expect(result.removedFromRouters).toBeGreaterThanOrEqual(1);
    const [row] = await database.db.select().from(vouchers).where(eq(vouchers.id, sold.voucherId));
    expect(row!.status).toBe("expired");
    expect(
      await count(
        database.db,
        sql`select count(*)::int as n from provisioning_outbox where voucher_id = ${sold.voucherId} and action = 'remove_voucher'`,
      ),
    ).toBe(1);
    expect((await expireVouchers(ctx, job)).expired).toBe(0);
  });

  it("printed codes go live when a reseller has sold them, and only once", async () => {
    const { ctx } = billingContext(database.db, new FakeClock("2026-08-02T10:00:00Z"));
    const plan = await createPlan(database.db, {
      priceCents: 2_000,
      kind: "hotspot",
      periodUnit: "hours",
      periodCount: 3,
    });
    const { codes } = await createVoucherBatch(ctx, admin, { planId: plan.id, quantity: 3 });
    const first = await markVouchersSold(ctx, admin, {
      codes: [codes[0]!, `${codes[1]!.slice(0, 4)}-${codes[1]!.slice(4)}`],
    });
    expect(first).toEqual({ sold: 2, notAvailable: 0, paymentId: null });
    const again = await markVouchersSold(ctx, admin, { codes: [codes[0]!] });
    expect(again).toEqual({ sold: 0, notAvailable: 1, paymentId: null });
  });

  it("a printed code past its unsold date is not sold, even before the expiry job has run", async () => {
    const clock = new FakeClock("2026-08-03T10:00:00Z");
    const { ctx } = billingContext(database.db, clock);
    const plan = await createPlan(database.db, { priceCents: 2_000, kind: "hotspot", periodUnit: "hours" });
    const { batch, codes } = await createVoucherBatch(ctx, admin, { planId: plan.id, quantity: 2 });
    clock.advance(ctx.settings.unsoldVoucherDays * DAY);
    expect(await markVouchersSold(ctx, admin, { codes })).toEqual({
      sold: 0,
      notAvailable: 2,
      paymentId: null,
    });
    expect(await markVouchersSold(ctx, admin, { batchId: batch.id })).toEqual({
      sold: 0,
      notAvailable: 0,
      paymentId: null,
    });
    const rows = await database.db.select().from(vouchers).where(eq(vouchers.batchId, batch.id));
    expect(rows.map((v) => v.status)).toEqual(["available", "available"]);
    expect((await expireVouchers(ctx, job)).expired).toBeGreaterThanOrEqual(2);
  });

  it("printed codes sold after their plan was edited give what their cards print", async () => {
    const clock = new FakeClock("2026-08-05T10:00:00Z");
    const { ctx } = billingContext(database.db, clock);
    const plan = await createPlan(database.db, {
      priceCents: 20_000,
      kind: "hotspot",
      periodUnit: "days",
      periodCount: 7,
      dataCapBytes: 2 * 1024 ** 3,
    });
    // The cards say "7 days · 2 GB"; then the plan becomes a day and 1 GB.
    const { batch, codes } = await createVoucherBatch(ctx, admin, { planId: plan.id, quantity: 2 });
    await updatePlan(ctx, admin, plan.code, { periodCount: 1, dataCapBytes: 1024 ** 3 });
    clock.advance(DAY);
    await markVouchersSold(ctx, admin, { codes: [codes[0]!] });
    await markVouchersSold(ctx, admin, { batchId: batch.id });
    const sold = await database.db.select().from(vouchers).where(eq(vouchers.batchId, batch.id));
    for (const voucher of sold)
      expect(voucher).toMatchObject({
        status: "sold",
        expiresAt: new Date("2026-08-13T10:00:00Z"),
        limitBytesTotal: 2 * 1024 ** 3,
      });
    // A code sold online now is on the plan as it is.
    const online = await database.db.transaction((tx) =>
      sellVoucherInTx(tx, ctx, admin, { planId: plan.id, phone: "+254700000931", language: "en" }),
    );
    expect(online.expiresAt).toEqual(new Date("2026-08-07T10:00:00Z"));
  });

  it("a whole printed batch is sold at once, only its codes still unsold", async () => {
    const { ctx } = billingContext(database.db, new FakeClock("2026-08-04T10:00:00Z"));
    const plan = await createPlan(database.db, { priceCents: 2_000, kind: "hotspot", periodUnit: "days" });
    const { batch, codes } = await createVoucherBatch(ctx, admin, { planId: plan.id, quantity: 4 });
    const other = await createVoucherBatch(ctx, admin, { planId: plan.id, quantity: 2 });
    await markVouchersSold(ctx, admin, { codes: [codes[2]!] });
    expect(await markVouchersSold(ctx, admin, { batchId: batch.id })).toEqual({
      sold: 3,
      notAvailable: 0,
      paymentId: null,
    });
    const statuses = async (batchId: number) =>
      (
        await database.db.select().from(vouchers).where(eq(vouchers.batchId, batchId)).orderBy(vouchers.id)
      ).map((v) => v.status);
    expect(await statuses(batch.id)).toEqual(["sold", "sold", "sold", "sold"]);
    expect(await statuses(other.batch.id)).toEqual(["available", "available"]);
    await expect(markVouchersSold(ctx, admin, { codes: [] })).rejects.toThrow(/Name 1 to 100 codes/);
  });
});

describe("admin actions", () => {
  it("suspend and resume need a reason and leave it in the audit log", async () => {
    const { ctx } = billingContext(database.db);
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { subscription } = await activeSubscriber(ctx, plan.id);
    await expect(
      suspendSubscription(ctx, admin, { subscriptionId: subscription.id, reason: " " }),
    ).rejects.toThrow(/reason/);
    await suspendSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "customer travelling" });
    await resumeSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "back home" });
    const entries = await database.db
      .select()
      .from(auditLog)
      .where(eq(auditLog.entityId, String(subscription.id)));
    expect(
      entries.filter((e) => e.entity === "subscription").map((e) => [e.action, e.reason, e.actorId]),
    ).toEqual(
      expect.arrayContaining([
        ["subscription.suspended", "customer travelling", "tg:1001"],
        ["subscription.resumed", "back home", "tg:1001"],
      ]),
    );
    const actions = await database.db
      .select()
      .from(provisioningOutbox)
      .where(eq(provisioningOutbox.subscriptionId, subscription.id));
    expect(actions.map((a) => a.action).slice(-2)).toEqual(["suspend", "restore"]);
  });

  it("extending gives free days and moves the next invoice with the period", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-09-01T09:00:00Z"));
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { subscription } = await activeSubscriber(ctx, plan.id);
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - DAY));
    await issueRecurringInvoices(ctx, job);
    const extended = await extendSubscription(ctx, admin, {
      subscriptionId: subscription.id,
      days: 3,
      reason: "outage 20-22 Sep",
    });
    expect(extended.currentPeriodEnd.getTime() - subscription.currentPeriodEnd.getTime()).toBe(3 * DAY);
    const next = await database.db
      .select()
      .from(invoices)
      .where(eq(invoices.subscriptionId, subscription.id));
    const renewal = next.find((i) => i.status === "open")!;
    expect(renewal.dueAt.toISOString()).toBe(extended.currentPeriodEnd.toISOString());
    await expect(
      extendSubscription(ctx, admin, { subscriptionId: subscription.id, days: 0, reason: "x" }),
    ).rejects.toThrow(/1 to 366/);
  });

  it("cancelling voids unserved invoices, returns what was paid on them as credit, and removes the router account", async () => {
    const { ctx, clock } = billingContext(database.db, new FakeClock("2026-09-02T09:00:00Z"));
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { customer, subscription } = await activeSubscriber(ctx, plan.id);
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - DAY));
    await issueRecurringInvoices(ctx, job);
    expect(await ledgerSum(database.db, customer.id)).toBe(-100_000);
    await cancelSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "moved away" });
    expect(await ledgerSum(database.db, customer.id)).toBe(0);
    const [row] = await database.db.select().from(subscriptions).where(eq(subscriptions.id, subscription.id));
    expect(row!.status).toBe("cancelled");
    const actions = await database.db
      .select()
      .from(provisioningOutbox)
      .where(eq(provisioningOutbox.subscriptionId, subscription.id));
    expect(actions.at(-1)!.action).toBe("remove_account");
    clock.advance(2 * DAY);
    await issueRecurringInvoices(ctx, job);
    expect(await ledgerSum(database.db, customer.id)).toBe(0);
  });

  it("bad sign-up input is refused and creates nothing", async () => {
    const { ctx } = billingContext(database.db);
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const before = await count(database.db, sql`select count(*)::int as n from customers`);
    await expect(
      createCustomerWithSubscription(ctx, admin, { name: "X", phone: "0712345678", planId: plan.id }),
    ).rejects.toThrow(/phone/);
    await expect(
      createCustomerWithSubscription(ctx, admin, { name: " ", phone: uniquePhone(), planId: plan.id }),
    ).rejects.toThrow(/name/);
    await expect(
      createCustomerWithSubscription(ctx, admin, { name: "Y", phone: uniquePhone(), planId: 999_999 }),
    ).rejects.toThrow(/plan/);
    const phone = uniquePhone();
    await createCustomerWithSubscription(ctx, admin, { name: "Z", phone, planId: plan.id });
    await expect(
      createCustomerWithSubscription(ctx, admin, { name: "Z2", phone, planId: plan.id }),
    ).rejects.toThrow(/already exists/);
    expect(await count(database.db, sql`select count(*)::int as n from customers`)).toBe(before + 1);
  });
});
