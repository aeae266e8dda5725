import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requestPayment } from "../../src/billing/intents/request.ts";
import { FakeClock, MINUTE } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import {
  jobRuns,
  ledgerEntries,
  messageOutbox,
  mpesaCallbacks,
  payments,
  provisioningOutbox,
  vouchers,
} from "../../src/db/schema/index.ts";
import { displayPhone } from "../../src/lib/phone.ts";
import { StkDispatcher } from "../../src/payments/mpesa/dispatcher.ts";
import { runRecoveryJob } from "../../src/payments/mpesa/recovery.ts";
import { billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import {
  freshPhone,
  type Harness,
  intent,
  pay,
  paymentCredits,
  silent,
  startHarness,
  subscriptionStatus,
  suspendedSubscriber,
} from "./harness.ts";

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

async function messages(phone: string, template: string) {
  return database.db
    .select()
    .from(messageOutbox)
    .where(and(eq(messageOutbox.recipient, phone), eq(messageOutbox.template, template)));
}

describe("STK push end to end (client → fake Daraja → callback over HTTP → app)", () => {
  it("a success delivered three times credits once and restores a suspended subscriber", async () => {
    const { customer, subscription } = await suspendedSubscriber(ctx, clock);
    expect(await subscriptionStatus(database.db, subscription.id)).toBe("suspended");
    const before = await paymentCredits(database.db, customer.id);

    const done = await pay(
      h,
      ctx,
      { customerId: customer.id, phone: customer.phone, amountCents: 300_000 },
      {
        outcome: "success",
        duplicates: 2,
      },
    );

    expect(done.status).toBe("succeeded");
    expect(done.checkoutRequestId).toMatch(/^ws_CO_/);
    expect(done.mpesaReceipt).toMatch(/^[A-Z0-9]{10}$/);
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 300_000]);
    expect(await subscriptionStatus(database.db, subscription.id)).toBe("active");
    const actions = await database.db
      .select({ action: provisioningOutbox.action })
      .from(provisioningOutbox)
      .where(eq(provisioningOutbox.subscriptionId, subscription.id))
      .orderBy(provisioningOutbox.id);
    // The router is told once to bring the secret back, after the suspension.
    expect(actions.map((a) => a.action).slice(-2)).toEqual(["suspend", "restore"]);
    expect(await messages(customer.phone, "payment_received_plain")).toHaveLength(1); // the sign-up's cash
    expect(await messages(customer.phone, "payment_received")).toHaveLength(1); // this one, with its receipt
    const push = h.fake.pushes.find((p) => p.checkoutRequestId === done.checkoutRequestId)!;
    expect(push).toMatchObject({ amount: 3000, accountReference: customer.accountNumber.slice(0, 12) });
    const seen = await database.db
      .select()
      .from(mpesaCallbacks)
      .where(eq(mpesaCallbacks.reference, done.checkoutRequestId!));
    expect(seen.map((s) => s.flag).sort()).toEqual(["duplicate", "duplicate", null]);
  });

  it.each([
    ["cancelled", "cancelled", /cancelled/],
    ["wrong_pin", "failed", /Wrong M-Pesa PIN/],
    ["insufficient_funds", "failed", /Not enough money/],
    ["unreachable", "timed_out", /could not be reached/],
  ] as const)(
    "%s credits nothing, leaves the intent %s and tells the payer",
    async (outcome, status, reason) => {
      const { customer, subscription } = await suspendedSubscriber(ctx, clock, 150_000);
      const before = await paymentCredits(database.db, customer.id);
      const done = await pay(
        h,
        ctx,
        { customerId: customer.id, phone: customer.phone, amountCents: 150_000 },
        {
          outcome,
          duplicates: 1,
        },
      );
      expect(done.status).toBe(status);
      expect(done.paymentId).toBeNull();
      expect(await paymentCredits(database.db, customer.id)).toEqual(before);
      expect(await subscriptionStatus(database.db, subscription.id)).toBe("suspended");
      const failed = await messages(customer.phone, "payment_failed");
      expect(failed).toHaveLength(1);
      expect(String(failed[0]!.params.reason)).toMatch(reason);
      // M-Pesa's code goes with it, so that a Kiswahili SMS gives the reason in Kiswahili.
      expect(failed[0]!.params.reasonCode).toEqual(expect.any(Number));
    },
  );

  it("a prompt sent to another number that pays for the customer: its failure is told to the customer", async () => {
    const { customer } = await suspendedSubscriber(ctx, clock, 150_000);
    const payer = uniquePhone();
    const done = await pay(
      h,
      ctx,
      { customerId: customer.id, phone: payer, amountCents: 150_000 },
      { outcome: "insufficient_funds", duplicates: 1 },
    );
    expect(done.status).toBe("failed");
    // Told which number did not pay: the payer's own reasons ("not enough money") are not theirs.
    const failed = await messages(customer.phone, "payment_failed_other");
    expect(failed.map((m) => m.params)).toEqual([{ amountCents: 150_000, payer: displayPhone(payer) }]);
    expect(await messages(customer.phone, "payment_failed")).toHaveLength(0);
    expect(await messages(payer, "payment_failed")).toHaveLength(0);
  });

  it("a lost callback is settled by the recovery job's status query", async () => {
    const { customer, subscription } = await suspendedSubscriber(ctx, clock, 120_000);
    const sent = await pay(
      h,
      ctx,
      { customerId: customer.id, phone: customer.phone, amountCents: 120_000 },
      {
        outcome: "success",
        delayMs: 5,
        lost: true,
      },
    );
    expect(sent.status).toBe("pending");
    await new Promise((r) => setTimeout(r, 20));
    // Not yet overdue for recovery: nothing is asked.
    const early = await runRecoveryJob(h.recovery);
    expect(early?.queried).toBe(0);
    clock.advance(3 * MINUTE);
    const counts = await runRecoveryJob(h.recovery);
    expect(counts).toMatchObject({ queried: 1, settled: 1, timedOut: 0 });
    const settled = await intent(database.db, sent.id);
    expect(settled.status).toBe("succeeded");
    expect(await paymentCredits(database.db, customer.id)).toContain(120_000);
    expect(await subscriptionStatus(database.db, subscription.id)).toBe("active");
    const runs = await database.db.select().from(jobRuns).where(eq(jobRuns.job, "mpesa_recovery"));
    expect(runs.at(-1)).toMatchObject({ status: "ok", counts: { queried: 1, settled: 1 } });
    // A second run finds nothing left to do.
    expect((await runRecoveryJob(h.recovery))?.queried).toBe(0);
  });

  it("a push nobody answers times out; its success arriving later is credited once", async () => {
    const { customer } = await suspendedSubscriber(ctx, clock, 80_000);
    const before = await paymentCredits(database.db, customer.id);
    const sent = await pay(
      h,
      ctx,
      { customerId: customer.id, phone: customer.phone, amountCents: 80_000 },
      {
        outcome: "success",
        delayMs: 600,
        lateByMs: 600,
      },
    );
    clock.advance(16 * MINUTE);
    const counts = await runRecoveryJob(h.recovery);
    expect(counts).toMatchObject({ queried: 1, timedOut: 1 });
    expect((await intent(database.db, sent.id)).status).toBe("timed_out");
    // Daraja accepted the push, so it may still be paid: nobody is told it failed.
    expect(await messages(customer.phone, "payment_failed")).toHaveLength(0);

    await h.fake.idle();
    const late = await intent(database.db, sent.id);
    expect(late.status).toBe("succeeded");
    const push = h.fake.pushes.find((p) => p.checkoutRequestId === sent.checkoutRequestId)!;
    await h.fake.postCallback(h.stkUrl, push.body);
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 80_000]);
  });

  it("a voucher bought by STK is sold once and sent by SMS, without crediting an account", async () => {
    const plan = await createPlan(database.db, { priceCents: 5_000, kind: "hotspot", periodUnit: "days" });
    const phone = freshPhone();
    const done = await pay(
      h,
      ctx,
      { phone, amountCents: 5_000, purpose: "voucher", planId: plan.id },
      {
        outcome: "success",
        duplicates: 1,
      },
    );
    expect(done.status).toBe("succeeded");
    const sold = await database.db.select().from(vouchers).where(eq(vouchers.soldToPhone, phone));
    expect(sold).toHaveLength(1);
    expect(sold[0]!.status).toBe("sold");
    expect(done.outcome).toMatchObject({ voucherId: sold[0]!.id });
    expect(await messages(phone, "voucher_code")).toHaveLength(1);
    const [payment] = await database.db.select().from(payments).where(eq(payments.id, done.paymentId!));
    expect(payment).toMatchObject({ providerRef: done.mpesaReceipt, amountCents: 5_000, customerId: null });
  });

  it("a plan change paid by STK credits the payment and moves the subscription to the new plan", async () => {
    const { customer, subscription } = await suspendedSubscriber(ctx, clock, 100_000);
    await pay(
      h,
      ctx,
      { customerId: customer.id, phone: customer.phone, amountCents: 100_000 },
      { outcome: "success" },
    );
    const bigger = await createPlan(database.db, { priceCents: 200_000 });
    const { quotePlanChange } = await import("../../src/billing/plan-change-quote.ts");
    const quote = await quotePlanChange(database.db, ctx, {
      subscriptionId: subscription.id,
      planId: bigger.id,
    });
    expect(quote.kind).toBe("upgrade");
    clock.advance(6 * MINUTE);
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
    expect(done.status).toBe("succeeded");
    expect(done.outcome).toMatchObject({ planChange: "upgrade" });
    const { subscriptions } = await import("../../src/db/schema/index.ts");
    const [sub] = await database.db.select().from(subscriptions).where(eq(subscriptions.id, subscription.id));
    expect(sub!.planId).toBe(bigger.id);
  });

  it("a paid amount that differs from the intent is flagged and held in the unmatched queue", async () => {
    const { customer } = await suspendedSubscriber(ctx, clock, 90_000);
    const before = await paymentCredits(database.db, customer.id);
    const done = await pay(
      h,
      ctx,
      { customerId: customer.id, phone: customer.phone, amountCents: 90_000 },
      {
        outcome: "success",
        paidShillings: 9,
      },
    );
    expect(done.status).toBe("failed");
    expect(done.resultDesc).toMatch(/held for review/);
    expect(await paymentCredits(database.db, customer.id)).toEqual(before);
    const [payment] = await database.db.select().from(payments).where(eq(payments.id, done.paymentId!));
    expect(payment).toMatchObject({ status: "unmatched", amountCents: 900, customerId: null });
    const [flagged] = await database.db
      .select()
      .from(mpesaCallbacks)
      .where(eq(mpesaCallbacks.reference, done.checkoutRequestId!));
    expect(flagged!.flag).toBe("amount_mismatch");
  });
});

/**
 * Asks for `amountCents` and sends the push, M-Pesa answering the payer with `outcome` before the
 * push's own response reaches us: that response is held back until the callback has been delivered
 * and answered. Returns the request's intent id.
 */
async function pushAnsweredAfterItsCallback(
  customer: { id: number; phone: string },
  amountCents: number,
  outcome: "success" | "cancelled",
): Promise<number> {
  const slow = new StkDispatcher({
    ctx,
    logger: silent,
    callbackUrl: h.stkUrl,
    gateway: {
      stkPush: async (request) => {
        const accepted = await h.client.stkPush(request);
        await h.fake.idle();
        return accepted;
      },
      stkQuery: (id) => h.client.stkQuery(id),
    },
  });
  h.fake.queue({ outcome, delayMs: 0 });
  const asked = await requestPayment(
    ctx,
    { kind: "subscriber", id: customer.phone },
    { phone: customer.phone, purpose: "balance", amountCents, customerId: customer.id, channel: "test" },
  );
  if (!asked.ok) throw new Error(asked.message);
  await slow.runOnce();
  return asked.intentId;
}

describe("a callback that beats the push's own answer", () => {
  it("is matched to its intent at once (same phone and amount, no checkout id yet) and credited once", async () => {
    const { customer, subscription } = await suspendedSubscriber(ctx, clock, 60_000);
    const before = await paymentCredits(database.db, customer.id);
    const intentId = await pushAnsweredAfterItsCallback(customer, 60_000, "success");
    const done = await intent(database.db, intentId);
    expect(done.status).toBe("succeeded");
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 60_000]);
    expect(await subscriptionStatus(database.db, subscription.id)).toBe("active");
    const seen = await database.db
      .select()
      .from(mpesaCallbacks)
      .where(eq(mpesaCallbacks.reference, done.checkoutRequestId!));
    expect(seen.map((r) => r.flag)).toEqual([null]);
  });
});

describe("a failure callback that beats the push's own answer", () => {
  it("is recorded as unknown, then settles its intent once the checkout id is stored: the payer is told once", async () => {
    const { customer } = await suspendedSubscriber(ctx, clock, 65_000);
    const before = await paymentCredits(database.db, customer.id);
    const intentId = await pushAnsweredAfterItsCallback(customer, 65_000, "cancelled");

    const done = await intent(database.db, intentId);
    expect(done.status).toBe("cancelled");
    expect(done.checkoutRequestId).not.toBeNull();
    expect(await paymentCredits(database.db, customer.id)).toEqual(before);
    const told = await database.db
      .select()
      .from(messageOutbox)
      .where(and(eq(messageOutbox.recipient, customer.phone), eq(messageOutbox.template, "payment_failed")));
    expect(told).toHaveLength(1);
    const seen = await database.db
      .select()
      .from(mpesaCallbacks)
      .where(eq(mpesaCallbacks.reference, done.checkoutRequestId!))
      .orderBy(mpesaCallbacks.id);
    // The callback as it came (no intent had that checkout id yet), then its settling by the dispatcher.
    expect(seen.map((r) => r.flag)).toEqual(["unknown_checkout", null]);
  });
});

describe("callback endpoints", () => {
  it("a callback without the right token gets 404 and changes nothing", async () => {
    const { customer } = await suspendedSubscriber(ctx, clock, 70_000);
    const sent = await pay(
      h,
      ctx,
      { customerId: customer.id, phone: customer.phone, amountCents: 70_000 },
      {
        outcome: "success",
        lost: true,
      },
    );
    const push = h.fake.pushes.find((p) => p.checkoutRequestId === sent.checkoutRequestId)!;
    const count = async () =>
      (await database.db.select({ n: sql<number>`count(*)::int` }).from(mpesaCallbacks))[0]!.n;
    const callbacksBefore = await count();
    for (const path of ["/hooks/mp/wrong-token/stk", "/hooks/mp/stk", `/hooks/mp/${"x".repeat(17)}/stk`]) {
      const response = await fetch(`${h.baseUrl}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(push.body),
      });
      expect(response.status).toBe(404);
    }
    expect(await count()).toBe(callbacksBefore);
    expect((await intent(database.db, sent.id)).status).toBe("pending");
    await h.fake.postCallback(h.stkUrl, push.body);
    expect((await intent(database.db, sent.id)).status).toBe("succeeded");
  });

  it("with an address allowlist, callbacks from other addresses get 404 too", async () => {
    const body = JSON.stringify({
      Body: { stkCallback: { CheckoutRequestID: "ws_CO_allow", ResultCode: 1032 } },
    });
    for (const [allowedIps, status] of [
      [["196.201.214.200"], 404],
      [["196.201.214.200", "127.0.0.1"], 200],
    ] as const) {
      const guarded = await startHarness(ctx, { routes: { allowedIps: [...allowedIps] } });
      try {
        const response = await fetch(guarded.stkUrl, { method: "POST", body });
        expect(response.status).toBe(status);
      } finally {
        await guarded.close();
      }
    }
  });

  it("a paid callback for an unknown CheckoutRequestID credits nobody and waits in the unmatched queue", async () => {
    const before = (await database.db.select({ n: sql<number>`count(*)::int` }).from(ledgerEntries))[0]!.n;
    const body = {
      Body: {
        stkCallback: {
          MerchantRequestID: "1-2-3",
          CheckoutRequestID: "ws_CO_forged",
          ResultCode: 0,
          ResultDesc: "ok",
          CallbackMetadata: {
            Item: [
              { Name: "Amount", Value: 5000 },
              { Name: "MpesaReceiptNumber", Value: "FORGED1234" },
              { Name: "PhoneNumber", Value: 254700000000 },
            ],
          },
        },
      },
    };
    const response = await fetch(h.stkUrl, { method: "POST", body: JSON.stringify(body) });
    expect(await response.json()).toEqual({ ResultCode: 0, ResultDesc: "Accepted" });
    const [row] = await database.db
      .select()
      .from(mpesaCallbacks)
      .where(eq(mpesaCallbacks.reference, "ws_CO_forged"));
    expect(row!.flag).toBe("queued");
    const [queued] = await database.db.select().from(payments).where(eq(payments.providerRef, "FORGED1234"));
    expect(queued).toMatchObject({
      status: "unmatched",
      customerId: null,
      amountCents: 500_000,
      phone: "+254700000000",
    });
    expect(queued!.holdReason).toMatch(/no request matches/);
    expect((await database.db.select({ n: sql<number>`count(*)::int` }).from(ledgerEntries))[0]!.n).toBe(
      before,
    );
  });
});
