import { and, eq, inArray, isNull } from "drizzle-orm";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { BillingContext } from "../../src/billing/context.ts";
import { claimIntentsToSend, markIntentSent } from "../../src/billing/intents/dispatch.ts";
import { requestPayment } from "../../src/billing/intents/request.ts";
import { settleStkResult } from "../../src/billing/intents/settle.ts";
import { assignUnmatchedPayment } from "../../src/billing/unmatched.ts";
import { FakeClock, MINUTE } from "../../src/clock.ts";
import { mpesaCallbacks, paymentIntents, payments } from "../../src/db/schema/index.ts";
import type { StkGateway } from "../../src/payments/mpesa/daraja.ts";
import { StkDispatcher } from "../../src/payments/mpesa/dispatcher.ts";
import type { Delivery } from "../../src/payments/mpesa/fake.ts";
import { retryInbox } from "../../src/payments/mpesa/inbox-retry.ts";
import { toMsisdn } from "../../src/payments/mpesa/wire.ts";
import { activeSubscriber, admin, billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { type Harness, intent, paymentCredits, silent, startHarness } from "./harness.ts";
import { smsTo } from "./inbox-support.ts";

/**
 * Pushes whose checkout id we never learnt (the push's answer was lost, or storing it failed after
 * M-Pesa accepted it), and requests prompted twice: money paid on such a prompt is credited to the
 * request it was for, once, or waits in the unmatched queue; the payer is never told it failed.
 */

let database: TestDatabase;
let h: Harness;
const clock = new FakeClock("2026-04-01T08:00:00Z");
let ctx: BillingContext;
let plan: { id: number };

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  h = await startHarness(ctx);
  plan = await createPlan(database.db, { priceCents: 100_000 });
});
afterEach(async () => {
  // Each test leaves no push waiting to be sent: the next test's dispatcher would send it.
  const unsent = await database.db
    .select({ id: paymentIntents.id })
    .from(paymentIntents)
    .where(and(eq(paymentIntents.status, "pending"), isNull(paymentIntents.checkoutRequestId)));
  expect(unsent).toEqual([]);
});
afterAll(async () => {
  await h?.close();
  await database?.close();
});

/**
 * The push really reaches M-Pesa (the payer is prompted, the callback follows), then the dispatcher's
 * side fails before the checkout id is stored: as when the process loses its database right then.
 */
function losingCheckoutIds(): StkGateway {
  return {
    async stkPush(request) {
      await h.client.stkPush(request);
      throw new Error("connection to the database lost before the checkout id was stored");
    },
    stkQuery: (id) => h.client.stkQuery(id),
  };
}

const lossy = () =>
  new StkDispatcher({
    ctx,
    gateway: losingCheckoutIds(),
    logger: silent,
    callbackUrl: h.stkUrl,
    baseBackoffMs: 10,
  });

async function ask(customer: { id: number; phone: string }, amountCents: number): Promise<number> {
  const asked = await requestPayment(ctx, admin, {
    phone: customer.phone,
    purpose: "balance",
    amountCents,
    customerId: customer.id,
    channel: "test",
  });
  if (!asked.ok) throw new Error(asked.message);
  return asked.intentId;
}

/** The pushes M-Pesa accepted for this phone, in order. */
const pushesTo = (phone: string) => h.fake.pushes.filter((p) => p.msisdn === toMsisdn(phone));

/** M-Pesa posts this push's callback now (and again, as it may). */
async function deliver(push: { body: unknown }, copies = 1) {
  for (let i = 0; i < copies; i++) {
    const answer = await h.fake.postCallback(h.stkUrl, push.body);
    expect(answer).toEqual({ ResultCode: 0, ResultDesc: "Accepted" });
  }
}

async function paymentRows(receipts: string[]) {
  return database.db.select().from(payments).where(inArray(payments.providerRef, receipts));
}

async function callbackFlags(checkoutRequestId: string) {
  const rows = await database.db
    .select({ flag: mpesaCallbacks.flag })
    .from(mpesaCallbacks)
    .where(and(eq(mpesaCallbacks.kind, "stk"), eq(mpesaCallbacks.reference, checkoutRequestId)))
    .orderBy(mpesaCallbacks.id);
  return rows.map((r) => r.flag);
}

const webhook = { kind: "webhook", id: "mpesa" } as const;
const recovery = { kind: "system", id: "mpesa-recovery" } as const;

/** Answered at once, callback posted only when the test delivers it. */
const paid: Delivery = { outcome: "success", delayMs: 0, lost: true };
const cancelled: Delivery = { outcome: "cancelled", delayMs: 0, lost: true };

describe("a paid push whose checkout id was never stored", () => {
  it("is credited to the request it was for by its callback; nobody is told it failed", async () => {
    const { customer } = await activeSubscriber(ctx, plan.id);
    const other = (await activeSubscriber(ctx, plan.id)).customer;
    const before = await paymentCredits(database.db, customer.id);
    const otherBefore = await paymentCredits(database.db, other.id);
    // The request, one of the same payer for another amount, one of another payer for the same amount.
    const target = await ask(customer, 70_000);
    const otherAmount = await ask(customer, 45_000);
    const otherPayer = await ask(other, 70_000);
    h.fake.queue(paid, paid, paid);
    const pushed = h.fake.pushes.length;
    const d = lossy();
    expect(await d.runOnce()).toBe(3);
    expect(h.fake.pushes.length - pushed).toBe(3);
    for (const id of [target, otherAmount, otherPayer])
      expect(await intent(database.db, id)).toMatchObject({
        status: "pending",
        checkoutRequestId: null,
        pushUncertain: true,
      });

    const push = pushesTo(customer.phone).find((p) => p.amount === 700)!;
    await deliver(push, 2);

    expect(await intent(database.db, target)).toMatchObject({
      status: "succeeded",
      checkoutRequestId: push.checkoutRequestId,
      mpesaReceipt: push.receipt,
    });
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 70_000]);
    expect(await callbackFlags(push.checkoutRequestId)).toEqual([null, "duplicate"]);
    // The look-alikes were not touched.
    for (const id of [otherAmount, otherPayer])
      expect(await intent(database.db, id)).toMatchObject({ status: "pending", paymentId: null });
    expect(await paymentCredits(database.db, other.id)).toEqual(otherBefore);

    // The dispatcher gives up on the other two (too late to prompt): they time out, silently.
    clock.advance(3 * MINUTE);
    expect(await d.runOnce()).toBe(2);
    for (const id of [otherAmount, otherPayer])
      expect(await intent(database.db, id)).toMatchObject({ status: "timed_out", pushUncertain: true });
    expect((await intent(database.db, target)).status).toBe("succeeded");

    // Their payments arrive after all: each is credited to its own request.
    await deliver(pushesTo(customer.phone).find((p) => p.amount === 450)!);
    await deliver(pushesTo(other.phone).at(-1)!);
    expect(await intent(database.db, otherAmount)).toMatchObject({ status: "succeeded" });
    expect(await intent(database.db, otherPayer)).toMatchObject({ status: "succeeded" });
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 70_000, 45_000]);
    expect(await paymentCredits(database.db, other.id)).toEqual([...otherBefore, 70_000]);

    expect(await smsTo(database.db, customer.phone, "payment_failed")).toEqual([]);
    expect(await smsTo(database.db, other.phone, "payment_failed")).toEqual([]);
  });

  it("is credited to its request when its callback is processed long after it came (the database was away)", async () => {
    const { customer } = await activeSubscriber(ctx, plan.id);
    const before = await paymentCredits(database.db, customer.id);
    const target = await ask(customer, 65_000);
    h.fake.queue(paid);
    expect(await lossy().runOnce()).toBe(1);
    const push = pushesTo(customer.phone).find((p) => p.amount === 650)!;
    // Stored when it came; its processing failed until the retry job's slow tries got it through.
    await h.mpesa.inbox.store({ kind: "stk", text: JSON.stringify(push.body) });
    clock.advance(20 * MINUTE);
    // Meanwhile the payer asks again for the same amount, and that push's answer is lost too: the
    // earlier money is not this request's.
    const later = await ask(customer, 65_000);
    h.fake.queue(paid);
    const d = lossy();
    // Pushes the later request; the first, too old to prompt again, times out.
    expect(await d.runOnce()).toBe(2);
    expect(await intent(database.db, target)).toMatchObject({ status: "timed_out", pushUncertain: true });
    clock.advance(25 * MINUTE);
    await retryInbox(h.mpesa);
    expect(await intent(database.db, target)).toMatchObject({
      status: "succeeded",
      mpesaReceipt: push.receipt,
    });
    expect(await intent(database.db, later)).toMatchObject({ status: "pending", paymentId: null });
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 65_000]);
    // Too late to prompt: the later request times out, as any does.
    await d.runOnce();
    expect(await intent(database.db, later)).toMatchObject({ status: "timed_out" });
  });

  it("two paid prompts of one request, neither checkout id stored, arriving together: one credit, one queued", async () => {
    for (let round = 0; round < 4; round++) {
      const { customer } = await activeSubscriber(ctx, plan.id);
      const before = await paymentCredits(database.db, customer.id);
      const id = await ask(customer, 65_000);
      h.fake.queue(paid, paid);
      const d = lossy();
      await d.runOnce();
      clock.advance(1_000);
      await d.runOnce();
      const pushes = pushesTo(customer.phone);
      expect(pushes).toHaveLength(2);
      expect(await intent(database.db, id)).toMatchObject({ checkoutRequestId: null, pushUncertain: true });

      await Promise.all(pushes.map((p) => deliver(p)));

      expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 65_000]);
      const recorded = await paymentRows(pushes.map((p) => p.receipt!));
      expect(recorded.map((p) => p.status).sort()).toEqual(["applied", "unmatched"]);
      expect((await intent(database.db, id)).status).toBe("succeeded");
      // The dispatcher has nothing left to send for it.
      clock.advance(3 * MINUTE);
      await d.runOnce();
      expect((await intent(database.db, id)).status).toBe("succeeded");
      expect(await smsTo(database.db, customer.phone, "payment_failed")).toEqual([]);
    }
  });

  it("a request M-Pesa cleanly refused (never prompted) does not compete with the one that was paid", async () => {
    const { customer } = await activeSubscriber(ctx, plan.id);
    const before = await paymentCredits(database.db, customer.id);
    // M-Pesa refuses the first request outright: it fails, and the payer is told.
    const refused = await ask(customer, 62_000);
    h.fake.failNextPush(400, "400.002.02", "Bad Request - Invalid Amount");
    await h.dispatcher.runOnce();
    expect(await intent(database.db, refused)).toMatchObject({
      status: "failed",
      checkoutRequestId: null,
      pushUncertain: false,
    });
    expect(await smsTo(database.db, customer.phone, "payment_failed")).toHaveLength(1);
    // The payer asks again; this push is accepted, but its checkout id is lost.
    const retried = await ask(customer, 62_000);
    h.fake.queue(paid);
    const d = lossy();
    expect(await d.runOnce()).toBe(1);
    const push = pushesTo(customer.phone).at(-1)!;

    try {
      await deliver(push);

      // Only the second request can have been paid: M-Pesa never prompted the first.
      expect(await intent(database.db, retried)).toMatchObject({
        status: "succeeded",
        mpesaReceipt: push.receipt,
      });
      expect(await intent(database.db, refused)).toMatchObject({ status: "failed", paymentId: null });
      expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 62_000]);
    } finally {
      // Whatever happened, the dispatcher gives up on the request it could not record.
      clock.advance(3 * MINUTE);
      await d.runOnce();
    }
  });

  it("when it fits two requests equally, it is queued for an admin, not guessed", async () => {
    const { customer } = await activeSubscriber(ctx, plan.id);
    const before = await paymentCredits(database.db, customer.id);
    const first = await ask(customer, 60_000);
    const second = await ask(customer, 60_000);
    h.fake.queue(paid, paid);
    const d = lossy();
    expect(await d.runOnce()).toBe(2);
    const [push] = pushesTo(customer.phone).slice(-2);

    await deliver(push!);

    const [queued] = await paymentRows([push!.receipt!]);
    expect(queued).toMatchObject({
      status: "unmatched",
      customerId: null,
      amountCents: 60_000,
      phone: customer.phone,
    });
    expect(queued!.holdReason).toMatch(/fits 2 requests/);
    expect(await callbackFlags(push!.checkoutRequestId)).toEqual(["queued"]);
    expect(await paymentCredits(database.db, customer.id)).toEqual(before);
    for (const id of [first, second]) expect((await intent(database.db, id)).paymentId).toBeNull();

    clock.advance(3 * MINUTE);
    expect(await d.runOnce()).toBe(2);
    for (const id of [first, second]) expect((await intent(database.db, id)).status).toBe("timed_out");
    expect(await smsTo(database.db, customer.phone, "payment_failed")).toEqual([]);
  });
});

describe("a paid prompt queued before its checkout id was stored, then placed by an admin", () => {
  it("its status query later says paid: nothing more is credited, the request points at that payment", async () => {
    const { customer } = await activeSubscriber(ctx, plan.id);
    const before = await paymentCredits(database.db, customer.id);
    // Two identical requests from one phone, both being sent: a paid callback fits both.
    const a = await ask(customer, 60_000);
    const b = await ask(customer, 60_000);
    expect((await claimIntentsToSend(ctx, { ids: [a, b] })).map((c) => c.id).sort()).toEqual([a, b].sort());
    const receipt = "TQA1234567";
    const checkout = "ws_CO_PLACED_1";
    const callback = await settleStkResult(ctx, webhook, {
      checkoutRequestId: checkout,
      outcome: "paid",
      reason: "The service request is processed successfully.",
      providerCode: 0,
      receipt,
      amountCents: 60_000,
      phone: customer.phone,
      source: "callback",
    });
    expect(callback.status).toBe("queued");
    // The dispatcher stores the checkout ids it was given, after the callback.
    await markIntentSent(ctx, { intentId: a, merchantRequestId: "m-a", checkoutRequestId: checkout });
    await markIntentSent(ctx, { intentId: b, merchantRequestId: "m-b", checkoutRequestId: "ws_CO_PLACED_2" });
    // An admin places the queued money on the payer's account.
    const [queued] = await paymentRows([receipt]);
    await assignUnmatchedPayment(ctx, admin, {
      paymentId: queued!.id,
      accountNumber: customer.accountNumber,
    });
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 60_000]);

    const query = await settleStkResult(ctx, recovery, {
      checkoutRequestId: checkout,
      outcome: "paid",
      reason: "The service request is processed successfully.",
      providerCode: 0,
      source: "query",
    });
    expect(query.status).toBe("duplicate");
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 60_000]);
    expect(await intent(database.db, a)).toMatchObject({
      status: "succeeded",
      paymentId: queued!.id,
      mpesaReceipt: receipt,
    });
    // The other request's prompt was not paid.
    const other = await settleStkResult(ctx, recovery, {
      checkoutRequestId: "ws_CO_PLACED_2",
      outcome: "cancelled",
      reason: "Request cancelled by user",
      providerCode: 1032,
      source: "query",
    });
    expect(other).toMatchObject({ status: "failed", intentId: b, intentStatus: "cancelled" });
  });
});

describe("a request prompted twice (the first push's answer was lost)", () => {
  /**
   * The first push is accepted but its answer is lost on the way back (connection reset); the
   * dispatcher tries again once the phone is free, and the second push's checkout id is stored.
   */
  async function promptTwice(first: Delivery, second: Delivery) {
    const { customer } = await activeSubscriber(ctx, plan.id);
    const before = await paymentCredits(database.db, customer.id);
    const id = await ask(customer, 55_000);
    h.fake.queue({ ...first, answer: "reset" }, second);
    await h.dispatcher.runOnce();
    expect(await intent(database.db, id)).toMatchObject({
      status: "pending",
      checkoutRequestId: null,
      pushUncertain: true,
    });
    clock.advance(1_000);
    await h.dispatcher.runOnce();
    const [push1, push2] = pushesTo(customer.phone);
    expect(pushesTo(customer.phone)).toHaveLength(2);
    expect(await intent(database.db, id)).toMatchObject({
      status: "pending",
      checkoutRequestId: push2!.checkoutRequestId,
      pushUncertain: true,
      sendAttempts: 2,
    });
    // Both prompts showed the same account.
    expect(push1!.accountReference).toBe(push2!.accountReference);
    return { customer, before, id, push1: push1!, push2: push2! };
  }

  it.each([
    ["the first is paid, its callback first", "first", ["first", "second"]],
    ["the first is paid, its callback last", "first", ["second", "first"]],
    ["the second is paid, its callback first", "second", ["second", "first"]],
    ["the second is paid, its callback last", "second", ["first", "second"]],
  ] as const)("one paid (%s): credited once, no failure SMS", async (_name, paidOne, order) => {
    const pushes = await promptTwice(
      paidOne === "first" ? paid : cancelled,
      paidOne === "second" ? paid : cancelled,
    );
    const { customer, before, id } = pushes;
    const paidPush = paidOne === "first" ? pushes.push1 : pushes.push2;
    for (const which of order) await deliver(which === "first" ? pushes.push1 : pushes.push2);

    expect(await intent(database.db, id)).toMatchObject({
      status: "succeeded",
      mpesaReceipt: paidPush.receipt,
    });
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 55_000]);
    expect(await paymentRows([paidPush.receipt!])).toMatchObject([
      { status: "applied", customerId: customer.id },
    ]);
    expect(await smsTo(database.db, customer.phone, "payment_failed")).toEqual([]);

    // Daraja repeats both: nothing changes.
    await deliver(pushes.push1);
    await deliver(pushes.push2);
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 55_000]);
    expect(await smsTo(database.db, customer.phone, "payment_failed")).toEqual([]);
  });

  it.each([
    ["the first callback first", ["first", "second"]],
    ["the second callback first", ["second", "first"]],
  ] as const)(
    "both paid (%s): one credit, the other payment in the unmatched queue",
    async (_name, order) => {
      const pushes = await promptTwice(paid, paid);
      const { customer, before, id, push1, push2 } = pushes;
      for (const which of order) await deliver(which === "first" ? push1 : push2);

      expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 55_000]);
      const done = await intent(database.db, id);
      expect(done.status).toBe("succeeded");
      const creditedFirst = order[0] === "first" ? push1 : push2;
      const queuedLast = order[0] === "first" ? push2 : push1;
      expect(done.mpesaReceipt).toBe(creditedFirst.receipt);
      const [credited] = await paymentRows([creditedFirst.receipt!]);
      const [queued] = await paymentRows([queuedLast.receipt!]);
      expect(credited).toMatchObject({ status: "applied", customerId: customer.id, amountCents: 55_000 });
      expect(queued).toMatchObject({ status: "unmatched", customerId: null, amountCents: 55_000 });
      expect(queued!.holdReason).toEqual(expect.any(String));
      expect(queued!.holdReason!.length).toBeGreaterThan(0);
      expect(await smsTo(database.db, customer.phone, "payment_failed")).toEqual([]);

      // Repeats change nothing: still one credit, one queued.
      await deliver(push1);
      await deliver(push2);
      expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 55_000]);
      expect(await paymentRows([push1.receipt!, push2.receipt!])).toHaveLength(2);
    },
  );

  it("the second paid prompt's hold reason names the request it paid again", async () => {
    const { customer, id, push1, push2 } = await promptTwice(paid, paid);
    await deliver(push2);
    await deliver(push1);
    const [queued] = await paymentRows([push1.receipt!]);
    expect(queued).toMatchObject({ status: "unmatched", phone: customer.phone });
    // Whichever callback comes last, the admin is told which request was already paid.
    expect(queued!.holdReason).toMatch(new RegExp(`intent ${id}\\b`));
  });
});
