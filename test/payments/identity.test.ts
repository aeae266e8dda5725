import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BillingContext } from "../../src/billing/context.ts";
import { CREDITED_TWICE } from "../../src/billing/intents/receipts.ts";
import { requestPayment } from "../../src/billing/intents/request.ts";
import { settleStkResult } from "../../src/billing/intents/settle.ts";
import { assignUnmatchedPayment } from "../../src/billing/unmatched.ts";
import { FakeClock, MINUTE } from "../../src/clock.ts";
import {
  auditLog,
  ledgerEntries,
  mpesaCallbacks,
  paymentIntents,
  payments,
  plans,
  vouchers,
} from "../../src/db/schema/index.ts";
import { runRecoveryJob } from "../../src/payments/mpesa/recovery.ts";
import { parseStkCallback, stkResultFromCallback } from "../../src/payments/mpesa/wire.ts";
import { creditedTwiceAlertsFor } from "../support/admin-alerts.ts";
import { activeSubscriber, admin, billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase, onRealPostgres, type TestDatabase } from "../support/db.ts";
import { holdLock, waitingForLocks } from "../support/locks.ts";
import { eventually } from "./dispatch-support.ts";
import {
  answerPrompt,
  freshPhone,
  type Harness,
  intent,
  pay,
  paymentCredits,
  startHarness,
} from "./harness.ts";
import { c2bConfirmation, c2bConfirmUrl, paymentsByRef, postRaw, smsTo } from "./inbox-support.ts";

/**
 * One identity per payment: a push is known by its checkout id until its receipt arrives (by a late
 * callback or by a paybill confirmation of the push), and a receipt is credited once whichever way
 * it comes. Walk-in vouchers: their account reference, and what happens when the plan is retired.
 */

const shortcode = "174379";
let database: TestDatabase;
let h: Harness;
const clock = new FakeClock("2026-04-01T08:00:00Z");
let ctx: BillingContext;
let plan: { id: number };
let hotspot: { id: number; priceCents: number };

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  h = await startHarness(ctx, { fake: { shortcode }, routes: { shortcode } });
  plan = await createPlan(database.db, { priceCents: 100_000 });
  hotspot = await createPlan(database.db, { priceCents: 5_000, kind: "hotspot", periodUnit: "days" });
});
afterAll(async () => {
  await h?.close();
  await database?.close();
});

/** A subscriber's push M-Pesa accepted and the payer paid; its callback is lost. */
async function paidPushCallbackLost(amountCents = 40_000) {
  const { customer } = await activeSubscriber(ctx, plan.id);
  const before = await paymentCredits(database.db, customer.id);
  const sent = await pay(
    h,
    ctx,
    { customerId: customer.id, phone: customer.phone, amountCents },
    { outcome: "success", delayMs: 0, lost: true },
  );
  expect(sent).toMatchObject({ status: "pending", accountReference: customer.accountNumber });
  const push = h.fake.pushes.find((p) => p.checkoutRequestId === sent.checkoutRequestId)!;
  expect(push.receipt).toMatch(/^T[A-Z0-9]{9}$/);
  return { customer, before, sent, push };
}

/** The recovery job asks M-Pesa about it (the push is overdue) and settles it without a receipt. */
async function settleByQuery(intentId: number) {
  clock.advance(3 * MINUTE);
  await runRecoveryJob(h.recovery);
  const settled = await intent(database.db, intentId);
  expect(settled).toMatchObject({ status: "succeeded", mpesaReceipt: null });
  const [payment] = await database.db.select().from(payments).where(eq(payments.id, settled.paymentId!));
  expect(payment!.providerRef).toBe(`stk:${settled.checkoutRequestId}`);
  return payment!;
}

/** M-Pesa's paybill confirmation of a push, posted by Daraja moments after the payer paid. */
async function confirmByPaybill(input: {
  receipt: string;
  billRef: string;
  amountCents: number;
  sentAt: Date;
  /** When the payer paid, after the push was sent: moments after, unless said. */
  paidAfterMs?: number;
}) {
  const body = c2bConfirmation({
    transId: input.receipt,
    billRef: input.billRef,
    amount: (input.amountCents / 100).toFixed(2),
    shortcode,
    paidAt: new Date(input.sentAt.getTime() + (input.paidAfterMs ?? 40_000)),
  });
  const answer = await postRaw(c2bConfirmUrl(h), JSON.stringify(body));
  expect(answer.status).toBe(200);
  expect(JSON.parse(answer.text)).toEqual({ ResultCode: 0, ResultDesc: "Success" });
}

async function flagsOf(kind: "stk" | "c2b_confirmation", reference: string) {
  const rows = await database.db
    .select({ flag: mpesaCallbacks.flag })
    .from(mpesaCallbacks)
    .where(and(eq(mpesaCallbacks.kind, kind), eq(mpesaCallbacks.reference, reference)))
    .orderBy(mpesaCallbacks.id);
  return rows.map((r) => r.flag);
}

describe("a push settled by the status query, then its receipt arrives", () => {
  it("by the late callback: credited once, the payment takes the receipt; a paybill copy is a duplicate", async () => {
    const { customer, before, sent, push } = await paidPushCallbackLost();
    const payment = await settleByQuery(sent.id);
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 40_000]);

    await h.fake.postCallback(h.stkUrl, push.body);
    expect(await intent(database.db, sent.id)).toMatchObject({
      status: "succeeded",
      mpesaReceipt: push.receipt,
    });
    expect(await paymentsByRef(database.db, push.receipt!)).toMatchObject([
      { id: payment.id, customerId: customer.id, status: "applied" },
    ]);
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 40_000]);
    expect(await flagsOf("stk", push.checkoutRequestId)).toEqual(["duplicate"]);

    await confirmByPaybill({
      receipt: push.receipt!,
      billRef: customer.accountNumber,
      amountCents: 40_000,
      sentAt: sent.sentAt!,
    });
    expect(await paymentsByRef(database.db, push.receipt!)).toHaveLength(1);
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 40_000]);
    expect(await flagsOf("c2b_confirmation", push.receipt!)).toEqual(["duplicate"]);
  });

  it("by a paybill confirmation of the push (its account, same amount, moments later): one credit", async () => {
    const { customer, before, sent, push } = await paidPushCallbackLost(35_000);
    const payment = await settleByQuery(sent.id);

    await confirmByPaybill({
      receipt: push.receipt!,
      billRef: push.accountReference,
      amountCents: 35_000,
      sentAt: sent.sentAt!,
    });
    expect(await flagsOf("c2b_confirmation", push.receipt!)).toEqual(["receipt_of_push"]);
    expect(await intent(database.db, sent.id)).toMatchObject({ mpesaReceipt: push.receipt });
    expect(await paymentsByRef(database.db, push.receipt!)).toMatchObject([{ id: payment.id }]);
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 35_000]);

    // The late callback and a repeated confirmation are duplicates.
    await h.fake.postCallback(h.stkUrl, push.body);
    await confirmByPaybill({
      receipt: push.receipt!,
      billRef: push.accountReference,
      amountCents: 35_000,
      sentAt: sent.sentAt!,
    });
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 35_000]);
    expect(await flagsOf("stk", push.checkoutRequestId)).toEqual(["duplicate"]);
  });

  it("a walk-in voucher's push: the confirmation names TDW<id>; the voucher is sold once, nothing queued", async () => {
    const phone = freshPhone();
    const sent = await pay(
      h,
      ctx,
      { phone, amountCents: hotspot.priceCents, purpose: "voucher", planId: hotspot.id },
      { outcome: "success", delayMs: 0, lost: true },
    );
    expect(sent.accountReference).toBe(`TDW${sent.id}`);
    const push = h.fake.pushes.find((p) => p.checkoutRequestId === sent.checkoutRequestId)!;
    expect(push.accountReference).toBe(`TDW${sent.id}`);
    const payment = await settleByQuery(sent.id);
    expect(payment).toMatchObject({ status: "applied", customerId: null });

    await confirmByPaybill({
      receipt: push.receipt!,
      billRef: `TDW${sent.id}`,
      amountCents: hotspot.priceCents,
      sentAt: sent.sentAt!,
    });
    expect(await paymentsByRef(database.db, push.receipt!)).toMatchObject([
      { id: payment.id, status: "applied", customerId: null },
    ]);
    expect(await database.db.select().from(vouchers).where(eq(vouchers.soldToPhone, phone))).toHaveLength(1);
    expect(await smsTo(database.db, phone, "voucher_code")).toHaveLength(1);
    const queued = await database.db
      .select()
      .from(payments)
      .where(and(eq(payments.status, "unmatched"), eq(payments.amountCents, hotspot.priceCents)));
    expect(
      queued.filter((p) => p.providerRef === push.receipt || p.accountReference === `TDW${sent.id}`),
    ).toEqual([]);
  });
});

describe("a paybill confirmation that comes before the push's result", () => {
  /** Payments an admin could still credit that are this push's money. */
  async function stillQueued(intentId: number, receipt: string, checkoutRequestId: string) {
    const rows = await database.db.select().from(payments).where(eq(payments.status, "unmatched"));
    return rows.filter(
      (p) =>
        p.providerRef === receipt ||
        p.providerRef === `stk:${checkoutRequestId}` ||
        p.accountReference === `intent ${intentId}` ||
        p.accountReference === `voucher ${intentId}`,
    );
  }

  const afterwards = [
    ["then the callback", ["callback"]],
    ["then the status query, then the callback", ["query", "callback"]],
  ] as const;

  it.each(afterwards)(
    "a subscriber's push, %s: credited once, nothing of it left in the unmatched queue",
    async (_n, steps) => {
      const { customer, before, sent, push } = await paidPushCallbackLost(45_000);

      await confirmByPaybill({
        receipt: push.receipt!,
        billRef: customer.accountNumber,
        amountCents: 45_000,
        sentAt: sent.sentAt!,
      });
      expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 45_000]);
      for (const step of steps) {
        if (step === "query") {
          clock.advance(3 * MINUTE);
          await runRecoveryJob(h.recovery);
        } else await h.fake.postCallback(h.stkUrl, push.body);
        expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 45_000]);
      }

      expect(await intent(database.db, sent.id)).toMatchObject({
        status: "succeeded",
        mpesaReceipt: push.receipt,
      });
      expect(await paymentsByRef(database.db, push.receipt!)).toMatchObject([
        { status: "applied", customerId: customer.id },
      ]);
      // Every route has now said which payment this is: nothing is left that an admin could pay again.
      expect(await stillQueued(sent.id, push.receipt!, push.checkoutRequestId)).toEqual([]);
    },
  );

  it("its account typed as a payer might (`#acc `), then the status query: the push is that payment", async () => {
    const { customer, before, sent, push } = await paidPushCallbackLost(46_000);
    await confirmByPaybill({
      receipt: push.receipt!,
      billRef: ` #${customer.accountNumber.toLowerCase()} `,
      amountCents: 46_000,
      sentAt: sent.sentAt!,
    });
    const [paybill] = await paymentsByRef(database.db, push.receipt!);
    clock.advance(3 * MINUTE);
    await runRecoveryJob(h.recovery);
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 46_000]);
    expect(await intent(database.db, sent.id)).toMatchObject({
      status: "succeeded",
      mpesaReceipt: push.receipt,
      paymentId: paybill!.id,
    });
    expect(await stillQueued(sent.id, push.receipt!, push.checkoutRequestId)).toEqual([]);

    await h.fake.postCallback(h.stkUrl, push.body);
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 46_000]);
    expect(await stillQueued(sent.id, push.receipt!, push.checkoutRequestId)).toEqual([]);
  });

  it("paid minutes from the push (a clock off at one end), then the status query: credited once, held for review", async () => {
    const { customer, before, sent, push } = await paidPushCallbackLost(47_000);
    await confirmByPaybill({
      receipt: push.receipt!,
      billRef: customer.accountNumber,
      amountCents: 47_000,
      sentAt: sent.sentAt!,
      paidAfterMs: 3 * MINUTE,
    });
    clock.advance(3 * MINUTE);
    await runRecoveryJob(h.recovery);
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 47_000]);
    const settled = await intent(database.db, sent.id);
    expect(settled).toMatchObject({ status: "succeeded", resultDesc: "Paid: held for review" });
    const [held] = await database.db.select().from(payments).where(eq(payments.id, settled.paymentId!));
    expect(held).toMatchObject({ status: "unmatched", providerRef: `stk:${push.checkoutRequestId}` });
    expect(held!.holdReason).toContain(push.receipt!);

    // The push's own callback then shows the two are one payment: the held record goes.
    await h.fake.postCallback(h.stkUrl, push.body);
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 47_000]);
    expect(await stillQueued(sent.id, push.receipt!, push.checkoutRequestId)).toEqual([]);
  });

  it.each(afterwards)(
    "a walk-in voucher's push, %s: the voucher is sold once, nothing left queued",
    async (_n, steps) => {
      const phone = freshPhone();
      const sent = await pay(
        h,
        ctx,
        { phone, amountCents: hotspot.priceCents, purpose: "voucher", planId: hotspot.id },
        { outcome: "success", delayMs: 0, lost: true },
      );
      const push = h.fake.pushes.find((p) => p.checkoutRequestId === sent.checkoutRequestId)!;
      await confirmByPaybill({
        receipt: push.receipt!,
        billRef: `TDW${sent.id}`,
        amountCents: hotspot.priceCents,
        sentAt: sent.sentAt!,
      });
      for (const step of steps) {
        if (step === "query") {
          clock.advance(3 * MINUTE);
          await runRecoveryJob(h.recovery);
        } else await h.fake.postCallback(h.stkUrl, push.body);
      }

      expect(await intent(database.db, sent.id)).toMatchObject({
        status: "succeeded",
        mpesaReceipt: push.receipt,
      });
      expect(await paymentsByRef(database.db, push.receipt!)).toMatchObject([
        { status: "applied", customerId: null },
      ]);
      expect(await database.db.select().from(vouchers).where(eq(vouchers.soldToPhone, phone))).toHaveLength(
        1,
      );
      expect(await stillQueued(sent.id, push.receipt!, push.checkoutRequestId)).toEqual([]);
    },
  );
});

describe("the receipt arriving by two routes at once", () => {
  it("a query-settled push whose callback and paybill confirmation come together is credited once", async () => {
    for (let round = 0; round < 4; round++) {
      const { customer, before, sent, push } = await paidPushCallbackLost(30_000);
      await settleByQuery(sent.id);
      await Promise.all([
        h.fake.postCallback(h.stkUrl, push.body),
        confirmByPaybill({
          receipt: push.receipt!,
          billRef: customer.accountNumber,
          amountCents: 30_000,
          sentAt: sent.sentAt!,
        }),
      ]);
      expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 30_000]);
      expect(await paymentsByRef(database.db, push.receipt!)).toHaveLength(1);
      expect(await intent(database.db, sent.id)).toMatchObject({ mpesaReceipt: push.receipt });
    }
  });

  it("a pending push whose callback, paybill confirmation and status query come together is credited once", async () => {
    for (let round = 0; round < 4; round++) {
      const { customer, before, sent, push } = await paidPushCallbackLost(25_000);
      clock.advance(3 * MINUTE);
      await Promise.all([
        h.fake.postCallback(h.stkUrl, push.body),
        confirmByPaybill({
          receipt: push.receipt!,
          billRef: customer.accountNumber,
          amountCents: 25_000,
          sentAt: sent.sentAt!,
        }),
        runRecoveryJob(h.recovery),
      ]);
      expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 25_000]);
      expect(await intent(database.db, sent.id)).toMatchObject({ status: "succeeded" });
      const [credited] = await database.db
        .select()
        .from(ledgerEntries)
        .where(and(eq(ledgerEntries.customerId, customer.id), eq(ledgerEntries.amountCents, 25_000)));
      const [payment] = await database.db
        .select()
        .from(payments)
        .where(eq(payments.id, credited!.paymentId!));
      // Whichever came first, the payment ends up known by its receipt once the receipt has arrived.
      expect(payment!.providerRef).toBe(push.receipt);
    }
  });
  it.runIf(onRealPostgres())(
    "a status query and the paybill confirmation that both decided before either credited: credited once",
    async () => {
      // Another session holds the customer's money, so each settlement gets as far as it can
      // before crediting: the status query has locked its push, the confirmation has looked for
      // pushes it could be the receipt of. Whatever each saw then, one of them must wait for the
      // other to know.
      const { customer, before, sent, push } = await paidPushCallbackLost(35_000);
      clock.advance(3 * MINUTE);
      const held = await holdLock(
        database.url!,
        (tx) => tx`select id from customers where id = ${customer.id} for no key update`,
      );
      try {
        const settling = Promise.all([
          runRecoveryJob(h.recovery),
          confirmByPaybill({
            receipt: push.receipt!,
            billRef: customer.accountNumber,
            amountCents: 35_000,
            sentAt: sent.sentAt!,
          }),
        ]);
        await eventually(waitingForLocks(database.db, 2), 15_000);
        await held.release();
        await settling;
      } finally {
        await held.release();
      }
      expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 35_000]);
      expect(await intent(database.db, sent.id)).toMatchObject({ status: "succeeded" });
    },
  );
});

describe.runIf(onRealPostgres())("a held push payment, its admin and its callback at once", () => {
  it("an admin assigning it while its own callback proves it real: credited once, neither fails", async () => {
    // The push is paid, its callback lost; a paybill payment of the same amount to the account came
    // minutes after it was sent, so the status query's "paid" is held for an admin as possibly that
    // same money.
    const { customer, before, sent, push } = await paidPushCallbackLost(38_000);
    await confirmByPaybill({
      receipt: "RZZ1234567",
      billRef: customer.accountNumber,
      amountCents: 38_000,
      sentAt: sent.sentAt!,
      paidAfterMs: 3 * MINUTE,
    });
    clock.advance(3 * MINUTE);
    await runRecoveryJob(h.recovery);
    const held = (await intent(database.db, sent.id)).paymentId!;
    expect(await database.db.select().from(payments).where(eq(payments.id, held))).toMatchObject([
      { status: "unmatched" },
    ]);

    // The admin's assignment waits for the customer's money, held by another session; the
    // callback (a receipt of its own: it is real money) is settled behind it. Settled here through
    // the core, not the route: the route's batcher would settle a deadlocked callback again, one
    // by one, and hide the deadlock.
    const callback = stkResultFromCallback(parseStkCallback(push.body)!, null, push.body);
    const holding = await holdLock(
      database.url!,
      (tx) => tx`select id from customers where id = ${customer.id} for no key update`,
    );
    let outcomes: PromiseSettledResult<unknown>[];
    try {
      const assigning = assignUnmatchedPayment(ctx, admin, {
        paymentId: held,
        accountNumber: customer.accountNumber,
      });
      await eventually(waitingForLocks(database.db, 1), 15_000);
      const settling = settleStkResult(ctx, { kind: "webhook", id: "mpesa" }, callback);
      await eventually(waitingForLocks(database.db, 2), 15_000);
      await holding.release();
      outcomes = await Promise.allSettled([assigning, settling]);
    } finally {
      await holding.release();
    }
    const failures = outcomes
      .flatMap((o) => (o.status === "rejected" ? [o.reason as { message?: string; cause?: unknown }] : []))
      .map((e) => String((e.cause as { message?: string } | undefined)?.message ?? e.message).slice(0, 120));
    expect(failures).toEqual([]);
    expect(await flagsOf("stk", push.checkoutRequestId)).toEqual(["duplicate"]);
    // The paybill payment and the push: two payments, each credited once.
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 38_000, 38_000]);
    expect(await paymentsByRef(database.db, push.receipt!)).toMatchObject([{ id: held, status: "applied" }]);
  });
});

describe("a held push payment an admin credited, then shown by its callback to be the paybill payment's money", () => {
  it("stays credited twice (nothing is taken back without an admin), and the admins are told once", async () => {
    const { customer, before, sent, push } = await paidPushCallbackLost(36_000);
    // M-Pesa's paybill confirmation of the push itself comes first, while the push is still
    // pending: an ordinary paybill payment to the account, dated minutes from the push (a clock off
    // at one end), too far from it to be taken for the push's own.
    await confirmByPaybill({
      receipt: push.receipt!,
      billRef: customer.accountNumber,
      amountCents: 36_000,
      sentAt: sent.sentAt!,
      paidAfterMs: 3 * MINUTE,
    });
    const [paybill] = await paymentsByRef(database.db, push.receipt!);
    clock.advance(3 * MINUTE);
    await runRecoveryJob(h.recovery);
    const held = (await intent(database.db, sent.id)).paymentId!;
    const [heldRow] = await database.db.select().from(payments).where(eq(payments.id, held));
    expect(heldRow).toMatchObject({ status: "unmatched" });
    expect(heldRow!.holdReason).toContain(`may be the same money as paybill payment ${push.receipt}`);
    // An admin credits it all the same.
    await assignUnmatchedPayment(ctx, admin, { paymentId: held, accountNumber: customer.accountNumber });

    // The push's own callback: its receipt is the paybill payment's.
    await h.fake.postCallback(h.stkUrl, push.body);
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 36_000, 36_000]);
    const found = await database.db.select().from(auditLog).where(eq(auditLog.entity, CREDITED_TWICE));
    expect(found).toMatchObject([
      {
        action: "payment.credited_twice",
        entityId: String(held),
        details: { receipt: push.receipt, samePaymentId: paybill!.id },
      },
    ]);

    const alerts = creditedTwiceAlertsFor(database.db, () => clock.now(), -100_777);
    expect(await alerts.tell()).toEqual({ queued: 1, creditedTwice: 1 });
    const text = await alerts.text();
    expect(text).toContain(
      `M-Pesa payment ${push.receipt} is credited twice: KES 360 to ${customer.accountNumber} as paybill payment #${paybill!.id}, and KES 360 to ${customer.accountNumber} as the push payment #${held}`,
    );
    expect(text).toContain(
      `Nothing was taken back: once agreed with the payer, /adjust ${customer.accountNumber} -360 <reason> charges the second credit back.`,
    );
    expect(await alerts.tell()).toEqual({ creditedTwice: 0 });
  });
});

describe("a held push payment an admin credited, then shown by its callback to be a paybill payment still queued", () => {
  it("that queued payment leaves the queue as a duplicate: the money is credited once", async () => {
    const { customer, before, sent, push } = await paidPushCallbackLost(34_000);
    // As the paybill confirmation leaves a payment it could not place (it named no single push).
    const [queued] = await database.db
      .insert(payments)
      .values({
        method: "mpesa_c2b",
        provider: "mpesa",
        providerRef: push.receipt!,
        amountCents: 34_000,
        accountReference: customer.accountNumber,
        status: "unmatched",
        holdReason: "may be the receipt of pushes 1, 2, each already credited",
        receivedAt: new Date(sent.sentAt!.getTime() + 40_000),
      })
      .returning();
    clock.advance(3 * MINUTE);
    await runRecoveryJob(h.recovery);
    const held = (await intent(database.db, sent.id)).paymentId!;
    const [heldRow] = await database.db.select().from(payments).where(eq(payments.id, held));
    expect(heldRow!.holdReason).toContain(`may be the same money as paybill payment ${push.receipt}`);
    await assignUnmatchedPayment(ctx, admin, { paymentId: held, accountNumber: customer.accountNumber });

    await h.fake.postCallback(h.stkUrl, push.body);
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 34_000]);
    const [after] = await database.db.select().from(payments).where(eq(payments.id, queued!.id));
    expect(after).toMatchObject({
      status: "duplicate",
      holdReason: `the same money as push payment #${held}, credited already`,
    });
    expect(
      await database.db.select().from(auditLog).where(eq(auditLog.action, "payment.duplicate")),
    ).toMatchObject([
      { entityId: String(queued!.id), details: { receipt: push.receipt, samePaymentId: held } },
    ]);
    await expect(
      assignUnmatchedPayment(ctx, admin, { paymentId: queued!.id, accountNumber: customer.accountNumber }),
    ).rejects.toThrow(/not waiting to be assigned/);
  });
});

describe("a walk-in's push paid and settled by the status query, then a paybill payment to its TDW reference", () => {
  it("two hours later: a second payment, queued for an admin, not taken for the push's receipt", async () => {
    const phone = freshPhone();
    const sent = await pay(
      h,
      ctx,
      { phone, amountCents: hotspot.priceCents, purpose: "voucher", planId: hotspot.id },
      { outcome: "success", delayMs: 0, lost: true },
    );
    await settleByQuery(sent.id);

    // Two hours on, the buyer pays again at the paybill with the reference the push showed.
    clock.advance(2 * 60 * MINUTE);
    const again = "RZW7654321";
    const body = c2bConfirmation({
      transId: again,
      billRef: `TDW${sent.id}`,
      amount: (hotspot.priceCents / 100).toFixed(2),
      shortcode,
      paidAt: clock.now(),
    });
    expect((await postRaw(c2bConfirmUrl(h), JSON.stringify(body))).status).toBe(200);

    expect(await paymentsByRef(database.db, again)).toMatchObject([
      { status: "unmatched", amountCents: hotspot.priceCents, accountReference: `TDW${sent.id}` },
    ]);
    // The push keeps its own identity: still known by its checkout id, its receipt still to come.
    expect(await intent(database.db, sent.id)).toMatchObject({ status: "succeeded", mpesaReceipt: null });
    expect(await database.db.select().from(vouchers).where(eq(vouchers.soldToPhone, phone))).toHaveLength(1);
  });
});

describe("walk-in vouchers", () => {
  it("the push of a walk-in shows TDW<intent id>; a subscriber's shows the account number", async () => {
    const phone = freshPhone();
    const walkIn = await pay(
      h,
      ctx,
      { phone, amountCents: hotspot.priceCents, purpose: "voucher", planId: hotspot.id },
      { outcome: "success", delayMs: 0 },
    );
    expect(walkIn.customerId).toBeNull();
    expect(walkIn.accountReference).toBe(`TDW${walkIn.id}`);
    expect(
      h.fake.pushes.find((p) => p.checkoutRequestId === walkIn.checkoutRequestId)!.accountReference,
    ).toBe(`TDW${walkIn.id}`);
    const { customer } = await activeSubscriber(ctx, plan.id);
    const subscriber = await pay(
      h,
      ctx,
      { customerId: customer.id, phone: customer.phone, amountCents: 10_000 },
      { outcome: "success", delayMs: 0 },
    );
    expect(subscriber.accountReference).toBe(customer.accountNumber);
  });

  it("paid for a plan retired meanwhile: the payment waits in the unmatched queue with the reason, no voucher", async () => {
    const retiring = await createPlan(database.db, {
      priceCents: 7_000,
      kind: "hotspot",
      periodUnit: "days",
    });
    const phone = freshPhone();
    const sent = await pay(
      h,
      ctx,
      { phone, amountCents: 7_000, purpose: "voucher", planId: retiring.id },
      { outcome: "success", delayMs: 0, lost: true },
    );
    const push = h.fake.pushes.find((p) => p.checkoutRequestId === sent.checkoutRequestId)!;
    await database.db.update(plans).set({ active: false }).where(eq(plans.id, retiring.id));

    await h.fake.postCallback(h.stkUrl, push.body);
    await h.fake.postCallback(h.stkUrl, push.body);

    const [payment] = await paymentsByRef(database.db, push.receipt!);
    expect(payment).toMatchObject({ status: "unmatched", customerId: null, amountCents: 7_000, phone });
    expect(payment!.holdReason).toMatch(/voucher not delivered/);
    expect(payment!.holdReason).toMatch(/retired/);
    expect(await paymentsByRef(database.db, push.receipt!)).toHaveLength(1);
    expect(await database.db.select().from(vouchers).where(eq(vouchers.soldToPhone, phone))).toEqual([]);
    expect(await smsTo(database.db, phone, "voucher_code")).toEqual([]);
    // The buyer is told once, however often the callback came.
    expect(await smsTo(database.db, phone, "voucher_not_issued")).toMatchObject([
      { params: { amountCents: 7_000 } },
    ]);
    expect((await intent(database.db, sent.id)).outcome).toMatchObject({ followUpError: expect.any(String) });
  });

  it("settled by the status query for a plan retired meanwhile: unmatched with the reason, no voucher", async () => {
    const retiring = await createPlan(database.db, {
      priceCents: 6_000,
      kind: "hotspot",
      periodUnit: "days",
    });
    const phone = freshPhone();
    const sent = await pay(
      h,
      ctx,
      { phone, amountCents: 6_000, purpose: "voucher", planId: retiring.id },
      { outcome: "success", delayMs: 0, lost: true },
    );
    await database.db.update(plans).set({ active: false }).where(eq(plans.id, retiring.id));
    clock.advance(3 * MINUTE);
    await runRecoveryJob(h.recovery);
    const settled = await intent(database.db, sent.id);
    const [payment] = await database.db.select().from(payments).where(eq(payments.id, settled.paymentId!));
    expect(payment).toMatchObject({ status: "unmatched", customerId: null, amountCents: 6_000 });
    expect(payment!.holdReason).toMatch(/voucher not delivered/);
    expect(await database.db.select().from(vouchers).where(eq(vouchers.soldToPhone, phone))).toEqual([]);
  });

  it("requestPayment refuses a voucher of a PPPoE plan (or a retired one), records nothing and takes no prompt slot", async () => {
    const phone = freshPhone();
    const retired = await createPlan(database.db, {
      priceCents: 5_000,
      kind: "hotspot",
      periodUnit: "days",
      active: false,
    });
    for (const planId of [plan.id, plan.id, retired.id, plan.id]) {
      const refused = await requestPayment(ctx, admin, {
        phone,
        purpose: "voucher",
        amountCents: 5_000,
        planId,
        channel: "test",
      });
      expect(refused).toMatchObject({
        ok: false,
        reason: "invalid",
        message: expect.stringMatching(/not on sale/),
      });
    }
    const recorded = await database.db
      .select({ n: sql<number>`count(*)::int` })
      .from(paymentIntents)
      .where(eq(paymentIntents.phone, phone));
    expect(recorded[0]!.n).toBe(0);
    // Four refusals took none of the three prompts allowed per window.
    const allowed = await requestPayment(ctx, admin, {
      phone,
      purpose: "voucher",
      amountCents: hotspot.priceCents,
      planId: hotspot.id,
      channel: "test",
    });
    expect(allowed.ok).toBe(true);
    if (allowed.ok) {
      // Sent and answered, so no push is left waiting for another test's dispatcher.
      await answerPrompt(h, { outcome: "cancelled", delayMs: 0 });
      expect((await intent(database.db, allowed.intentId)).status).toBe("cancelled");
    }
  });
});
