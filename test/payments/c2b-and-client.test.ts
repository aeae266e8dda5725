import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultPaymentLimits, requestPayment } from "../../src/billing/intents/request.ts";
import { assignUnmatchedPayment, listUnmatchedPayments } from "../../src/billing/unmatched.ts";
import { FakeClock, systemClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import {
  messageOutbox,
  mpesaCallbacks,
  payments,
  subscriptions,
  vouchers,
} from "../../src/db/schema/index.ts";
import { DarajaClient, DarajaError } from "../../src/payments/mpesa/daraja.ts";
import { FakeDaraja } from "../../src/payments/mpesa/fake.ts";
import { darajaTimestamp } from "../../src/payments/mpesa/wire.ts";
import { callbackPaths } from "../../src/payments/routes.ts";
import { activeSubscriber, admin, billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { freshPhone, type Harness, intent, paymentCredits, startHarness, token } from "./harness.ts";

let database: Database;
let h: Harness;
let strict: Harness;
const clock = new FakeClock("2026-04-01T08:00:00Z");
let ctx: ReturnType<typeof billingContext>["ctx"];

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  h = await startHarness(ctx);
  strict = await startHarness(ctx, {
    fake: { c2bValidation: true },
    routes: { rejectUnknownAccounts: true },
  });
  for (const x of [h, strict])
    await x.client.registerC2bUrls({
      confirmationUrl: `${x.baseUrl}${callbackPaths.c2bConfirmation(token)}`,
      validationUrl: `${x.baseUrl}${callbackPaths.c2bValidation(token)}`,
    });
});
afterAll(async () => {
  await h?.close();
  await strict?.close();
  await database.close();
});

describe("paybill (C2B)", () => {
  it("a confirmation naming an account credits it once, however often it is delivered", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { customer } = await activeSubscriber(ctx, plan.id);
    const before = await paymentCredits(database.db, customer.id);
    const first = await h.fake.c2b({
      billRef: ` #${customer.accountNumber.toLowerCase()} `,
      amountShillings: 1500,
    });
    expect(first.confirmation).toEqual({ ResultCode: 0, ResultDesc: "Success" });
    await h.fake.c2b({ billRef: customer.accountNumber, amountShillings: 1500, transId: first.transId });
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 150_000]);
  });

  it("an unknown BillRefNumber waits in the unmatched queue; assigning it credits the right account once", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { customer } = await activeSubscriber(ctx, plan.id);
    const before = await paymentCredits(database.db, customer.id);
    const { transId } = await h.fake.c2b({ billRef: "NO-SUCH-ACC", amountShillings: "2500.00" });
    const queued = (await listUnmatchedPayments(database.db)).find((p) => p.providerRef === transId);
    expect(queued).toMatchObject({
      status: "unmatched",
      amountCents: 250_000,
      customerId: null,
      method: "mpesa_c2b",
    });
    expect(await paymentCredits(database.db, customer.id)).toEqual(before);

    const assigned = await assignUnmatchedPayment(ctx, admin, {
      paymentId: queued!.id,
      accountNumber: customer.accountNumber,
    });
    expect(assigned.duplicate).toBe(false);
    await expect(
      assignUnmatchedPayment(ctx, admin, { paymentId: queued!.id, accountNumber: customer.accountNumber }),
    ).rejects.toThrow();
    // A late repeat of the confirmation changes nothing either.
    await h.fake.c2b({ billRef: "NO-SUCH-ACC", amountShillings: "2500.00", transId });
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 250_000]);
  });

  it("validation accepts unknown accounts by default and rejects them when configured to", async () => {
    const { validation, confirmation, transId } = await strict.fake.c2b({
      billRef: "NOPE",
      amountShillings: 10,
    });
    expect(validation).toEqual({ ResultCode: "C2B00012", ResultDesc: "Rejected" });
    expect(confirmation).toBeUndefined();
    const recorded = await database.db.select().from(payments).where(eq(payments.providerRef, transId));
    expect(recorded).toHaveLength(0);

    const open = await fetch(`${h.baseUrl}${callbackPaths.c2bValidation(token)}`, {
      method: "POST",
      body: JSON.stringify({ TransID: "X1", TransAmount: "10.00", BillRefNumber: "NOPE" }),
    });
    expect(await open.json()).toEqual({ ResultCode: "0", ResultDesc: "Accepted" });
  });

  it("a paybill confirmation and an STK callback for the same receipt credit once", async () => {
    const plan = await createPlan(database.db, { priceCents: 60_000 });
    const { customer } = await activeSubscriber(ctx, plan.id);
    const before = await paymentCredits(database.db, customer.id);
    h.fake.queue({ outcome: "success", delayMs: 5 });
    const asked = await requestPayment(ctx, admin, {
      phone: customer.phone,
      purpose: "balance",
      amountCents: 60_000,
      customerId: customer.id,
      channel: "test",
    });
    if (!asked.ok) throw new Error(asked.message);
    await h.dispatcher.runOnce();
    await h.fake.idle();
    const done = await intent(database.db, asked.intentId);
    await h.fake.c2b({ billRef: customer.accountNumber, amountShillings: 600, transId: done.mpesaReceipt! });
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 60_000]);
    const flags = await database.db
      .select()
      .from(mpesaCallbacks)
      .where(eq(mpesaCallbacks.reference, done.mpesaReceipt!));
    expect(flags.map((f) => f.flag)).toEqual(["duplicate"]);
  });
});

describe("a voucher push whose receipt also arrives as a paybill confirmation", () => {
  it.each(["a walk-in", "a customer"])(
    "sells the voucher once, on the confirmation, and leaves nothing in the unmatched queue (%s)",
    async (buyer) => {
      const plan = await createPlan(database.db, { priceCents: 3_000, kind: "hotspot", periodUnit: "days" });
      // A customer's voucher is a sale too: the push names the push, not their account.
      const customer =
        buyer === "a customer"
          ? (await activeSubscriber(ctx, (await createPlan(database.db, { priceCents: 100_000 })).id))
              .customer
          : null;
      const phone = customer?.phone ?? freshPhone();
      const creditsBefore = customer ? await paymentCredits(database.db, customer.id) : [];
      h.fake.queue({ outcome: "success", delayMs: 0, lost: true });
      const asked = await requestPayment(ctx, admin, {
        phone,
        ...(customer ? { customerId: customer.id } : {}),
        purpose: "voucher",
        amountCents: 3_000,
        planId: plan.id,
        channel: "t",
      });
      if (!asked.ok) throw new Error(asked.message);
      await h.dispatcher.runOnce();
      const sent = await intent(database.db, asked.intentId);
      const push = h.fake.pushes.find((p) => p.checkoutRequestId === sent.checkoutRequestId)!;

      // The confirmation names the push exactly (`TDW<intent>`): the sale is made at once.
      expect(push.accountReference).toBe(`TDW${asked.intentId}`);
      await h.fake.c2b({ billRef: push.accountReference, amountShillings: 30, transId: push.receipt! });
      expect((await intent(database.db, asked.intentId)).status).toBe("succeeded");
      await h.fake.postCallback(h.stkUrl, push.body);
      await h.fake.postCallback(h.stkUrl, push.body);

      const done = await intent(database.db, asked.intentId);
      expect(done.status).toBe("succeeded");
      expect((await listUnmatchedPayments(database.db)).map((p) => p.providerRef)).not.toContain(
        push.receipt,
      );
      const sold = await database.db.select().from(vouchers).where(eq(vouchers.soldToPhone, phone));
      expect(sold).toHaveLength(1);
      if (customer) expect(await paymentCredits(database.db, customer.id)).toEqual(creditsBefore);
    },
  );
});

describe("a plan-change push whose money an admin placed elsewhere first", () => {
  it("does not change the plan on credit the customer does not have", async () => {
    const basic = await createPlan(database.db, { priceCents: 100_000 });
    const fast = await createPlan(database.db, { priceCents: 200_000 });
    const { customer, subscription } = await activeSubscriber(ctx, basic.id);
    const other = (await activeSubscriber(ctx, basic.id)).customer;
    h.fake.queue({ outcome: "success", delayMs: 0, lost: true });
    const asked = await requestPayment(ctx, admin, {
      phone: customer.phone,
      customerId: customer.id,
      subscriptionId: subscription.id,
      planId: fast.id,
      purpose: "plan_change",
      amountCents: 50_000,
      channel: "t",
    });
    if (!asked.ok) throw new Error(asked.message);
    await h.dispatcher.runOnce();
    const sent = await intent(database.db, asked.intentId);
    const push = h.fake.pushes.find((p) => p.checkoutRequestId === sent.checkoutRequestId)!;
    // Its paybill record comes first with a reference nobody has, and an admin puts it on another account.
    await h.fake.c2b({ billRef: "NOBODY", amountShillings: 500, transId: push.receipt! });
    const [queued] = (await listUnmatchedPayments(database.db)).filter((p) => p.providerRef === push.receipt);
    await assignUnmatchedPayment(ctx, admin, { paymentId: queued!.id, accountNumber: other.accountNumber });

    await h.fake.postCallback(h.stkUrl, push.body);
    const [after] = await database.db
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.id, subscription.id));
    expect(after!.planId).toBe(basic.id);
    expect((await intent(database.db, asked.intentId)).outcome).toMatchObject({
      followUpCode: "money_elsewhere",
    });
  });
});

describe("Daraja client and dispatcher against the fake", () => {
  it("caches the token until shortly before it expires, whether expires_in is a string or a number", async () => {
    for (const expiresInAsNumber of [false, true]) {
      const fake = await FakeDaraja.start({ expiresInAsNumber, tokenLifetimeSeconds: 3599 });
      const fakeClock = new FakeClock(new Date());
      const client = new DarajaClient({
        baseUrl: fake.url,
        consumerKey: fake.consumerKey,
        consumerSecret: fake.consumerSecret,
        shortcode: fake.shortcode,
        passkey: fake.passkey,
        clock: fakeClock,
      });
      try {
        const first = await client.accessToken();
        await Promise.all([client.accessToken(), client.accessToken()]);
        expect(await client.accessToken()).toBe(first);
        expect(fake.tokensIssued).toBe(1);
        fakeClock.advance(3599_000 - 30_000);
        expect(await client.accessToken()).not.toBe(first);
        expect(fake.tokensIssued).toBe(2);
      } finally {
        await fake.close();
      }
    }
  });

  it("turns Daraja error bodies into typed errors; wrong credentials are refused", async () => {
    const bad = new DarajaClient({
      baseUrl: h.fake.url,
      consumerKey: "wrong",
      consumerSecret: "wrong",
      shortcode: h.fake.shortcode,
      passkey: h.fake.passkey,
      clock: systemClock,
    });
    const error = await bad.accessToken().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DarajaError);
    expect((error as DarajaError).errorCode).toBe("400.008.01");

    const wrongPasskey = new DarajaClient({
      baseUrl: h.fake.url,
      consumerKey: h.fake.consumerKey,
      consumerSecret: h.fake.consumerSecret,
      shortcode: h.fake.shortcode,
      passkey: "not-the-passkey",
      clock: systemClock,
    });
    const refused = await wrongPasskey
      .stkPush({
        msisdn: "254712345678",
        amountShillings: 10,
        accountReference: "A1",
        description: "x",
        callbackUrl: h.stkUrl,
      })
      .catch((e: unknown) => e);
    // Daraja answers a wrong passkey with a 500 that is not worth retrying: a configuration error.
    expect(refused).toMatchObject({
      status: 500,
      errorCode: "500.001.1001",
      errorMessage: "Wrong credentials",
      retryable: false,
      kind: "configuration",
    });
  });

  // Daraja's documented refusal, and the 401 other gateways of it answer.
  it.each([
    ["404.001.03", "Invalid Access Token"],
    ["401.003.01", "Error Occurred - Invalid Access Token"],
  ])("renews a token Daraja no longer accepts (%s) and retries once", async (errorCode, errorMessage) => {
    await h.client.accessToken();
    h.fake.tokenRefusal = { errorCode, errorMessage };
    h.fake.expireTokens();
    const issued = h.fake.tokensIssued;
    try {
      const accepted = await h.client.stkPush({
        msisdn: "254712345679",
        amountShillings: 1,
        accountReference: "ABCDEFGHIJKLMNOP",
        description: "A very long description",
        callbackUrl: h.stkUrl,
      });
      expect(accepted.CheckoutRequestID).toMatch(/^ws_CO_/);
      expect(h.fake.tokensIssued).toBe(issued + 1);
      const push = h.fake.pushes.at(-1)!;
      expect(push.accountReference).toBe("ABCDEFGHIJKL");
    } finally {
      h.fake.tokenRefusal = { errorCode: "404.001.03", errorMessage: "Invalid Access Token" };
    }
    await h.fake.idle();
  });

  it("uses Buy Goods for a till", async () => {
    const till = await startHarness(ctx, { fake: { till: "5544332" } });
    try {
      const accepted = await till.client.stkPush({
        msisdn: "254712345680",
        amountShillings: 5,
        accountReference: "T1",
        description: "d",
        callbackUrl: till.stkUrl,
      });
      expect(accepted.ResponseCode).toBe("0");
      await till.fake.idle();
    } finally {
      await till.close();
    }
  });

  it("retries a push Daraja refuses for a while, and fails one it refuses for good with an SMS", async () => {
    const plan = await createPlan(database.db, { priceCents: 1000 });
    const { customer } = await activeSubscriber(ctx, plan.id);
    const phone = customer.phone;
    h.fake.failNextPush(503, "500.003.02", "Spike arrest violation");
    h.fake.queue({ outcome: "success", lost: true });
    const retried = await requestPayment(ctx, admin, {
      phone,
      purpose: "balance",
      amountCents: 1000,
      customerId: customer.id,
      channel: "t",
    });
    if (!retried.ok) throw new Error(retried.message);
    await h.dispatcher.runOnce();
    const waiting = await intent(database.db, retried.intentId);
    expect(waiting).toMatchObject({
      status: "pending",
      checkoutRequestId: null,
      lastError: expect.stringMatching(/500.003.02/),
    });
    clock.advance(1000);
    await h.dispatcher.runOnce();
    expect((await intent(database.db, retried.intentId)).checkoutRequestId).toMatch(/^ws_CO_/);

    h.fake.failNextPush(400, "400.002.02", "Bad Request - Invalid PhoneNumber");
    const refused = await requestPayment(ctx, admin, {
      phone,
      purpose: "balance",
      amountCents: 1000,
      customerId: customer.id,
      channel: "t",
    });
    if (!refused.ok) throw new Error(refused.message);
    await h.dispatcher.runOnce();
    expect(await intent(database.db, refused.intentId)).toMatchObject({ status: "failed" });
    const sms = await database.db.select().from(messageOutbox).where(eq(messageOutbox.recipient, phone));
    expect(sms.filter((m) => m.template === "payment_failed")).toHaveLength(1);
  });

  it("kick() sends a requested push within milliseconds", async () => {
    h.dispatcher.start();
    try {
      const phone = freshPhone();
      h.fake.queue({ outcome: "success", lost: true });
      const asked = await requestPayment(ctx, admin, {
        phone,
        purpose: "balance",
        amountCents: 1000,
        customerId: 1,
        channel: "t",
      });
      if (!asked.ok) throw new Error(asked.message);
      const started = Date.now();
      h.dispatcher.kick();
      while (!(await intent(database.db, asked.intentId)).checkoutRequestId && Date.now() - started < 2000)
        await new Promise((r) => setTimeout(r, 5));
      expect(Date.now() - started).toBeLessThan(500);
    } finally {
      await h.dispatcher.stop();
    }
  });

  it("stamps the Timestamp in Nairobi time", () => {
    expect(darajaTimestamp(new Date("2026-01-31T21:30:05Z"))).toBe("20260201003005");
  });

  it("the 4th prompt within 5 minutes is refused and never reaches M-Pesa", async () => {
    const phone = freshPhone();
    const requestsBefore = h.fake.pushRequests;
    h.fake.queue(...Array.from({ length: 3 }, () => ({ outcome: "cancelled" as const, lost: true })));
    const results = [];
    for (let i = 0; i < 4; i++)
      results.push(
        await requestPayment(
          ctx,
          admin,
          {
            phone,
            purpose: "balance",
            amountCents: 1000,
            customerId: 1,
            channel: "t",
          },
          // Account 1 takes prompts from other tests too: only the per-phone limit is under test here.
          { ...defaultPaymentLimits, perAccount: 1_000 },
        ),
      );
    expect(results.map((r) => r.ok)).toEqual([true, true, true, false]);
    expect(results[3]).toMatchObject({ reason: "rate_limited" });
    await h.dispatcher.runOnce();
    // The three go out at once; M-Pesa prompts the first and refuses the others while it is open
    // ("Unable to lock subscriber"): what counts here is that the fourth never asked M-Pesa.
    expect(h.fake.pushRequests - requestsBefore).toBe(3);
  });
});
