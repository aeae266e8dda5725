import { and, eq, inArray, or } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BillingContext } from "../../src/billing/context.ts";
import { settleStkResult } from "../../src/billing/intents/settle.ts";
import { settleStkResults } from "../../src/billing/intents/settle-batch.ts";
import { recordPaybillPayment } from "../../src/billing/paybill.ts";
import { resubscribe } from "../../src/billing/resubscribe.ts";
import { rejectSignup } from "../../src/billing/signups.ts";
import { assignUnmatchedPayment, markUnmatchedRefunded } from "../../src/billing/unmatched.ts";
import { FakeClock, MINUTE } from "../../src/clock.ts";
import { ledgerEntries, messageOutbox, paymentIntents, payments } from "../../src/db/schema/index.ts";
import { eventually } from "../payments/dispatch-support.ts";
import { creditedTwiceAlertsFor } from "../support/admin-alerts.ts";
import { acceptedBalancePush, admin, billingContext, selfSignedUp } from "../support/billing.ts";
import { createTestDatabase, onRealPostgres, type TestDatabase } from "../support/db.ts";
import { holdLock, waitingForLocks } from "../support/locks.ts";

/**
 * One M-Pesa payment of a push reaches us up to three times: its callback (with the receipt), the
 * status query asked when the callback is late (no receipt), and M-Pesa's paybill confirmation of
 * it (the receipt, the account the push showed). In whatever order they come, it is one payment:
 * credited once to an open account, or waiting once in the unmatched queue for a closed one
 * (a rejected sign-up), so an admin can give it back only once.
 */

const PRICE = 100_000;
const mpesa = { kind: "webhook", id: "mpesa" } as const;
const clock = new FakeClock("2026-05-04T07:00:00Z");
let database: TestDatabase;
let ctx: BillingContext;

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
});
afterAll(async () => {
  await database?.close();
});

let seq = 0;
/** A sign-up whose first payment's prompt M-Pesa accepted; rejected meanwhile when `closed`. */
async function pushedSignup(closed: boolean) {
  const n = ++seq;
  const phone = `+2547128${String(n).padStart(5, "0")}`;
  const { customer, subscription, plan, accountNumber } = await selfSignedUp(ctx, {
    phone,
    name: `Applicant ${n}`,
    priceCents: PRICE,
  });
  const row = { customerId: customer.id, subscriptionId: subscription.id };
  const checkoutId = `ws_CO_one_row_${n}`;
  const sentAt = clock.now();
  const intentId = await acceptedBalancePush(ctx, {
    customerId: row.customerId,
    phone,
    amountCents: PRICE,
    checkoutId,
    accountReference: accountNumber,
    sentAt,
  });
  if (closed)
    await rejectSignup(ctx, admin, { subscriptionId: row.subscriptionId, reason: "area not served" });
  return {
    ...row,
    planId: plan.id,
    intentId,
    accountNumber,
    phone,
    checkoutId,
    sentAt,
    receipt: `RDU${String(n).padStart(7, "0")}`,
  };
}
type Push = Awaited<ReturnType<typeof pushedSignup>>;

type Route = "callback" | "query" | "paybill";

function arrive(push: Push, route: Route, paidAfterMs = 40_000) {
  if (route === "paybill")
    return recordPaybillPayment(ctx, mpesa, {
      transId: push.receipt,
      billRef: push.accountNumber,
      amountCents: PRICE,
      paidAt: new Date(push.sentAt.getTime() + paidAfterMs),
    });
  const paid = {
    checkoutRequestId: push.checkoutId,
    outcome: "paid" as const,
    reason: "The service request is processed successfully.",
  };
  // As the recovery job settles a status query's answer, and the callback route its callbacks (in
  // batches).
  if (route === "query") return settleStkResult(ctx, mpesa, { ...paid, source: "query" });
  return settleStkResults(ctx, mpesa, [
    { ...paid, receipt: push.receipt, amountCents: PRICE, phone: push.phone, source: "callback" },
  ]).then(([outcome]) => outcome!);
}

/** Every payment row recorded for this push's money, by any of its names. */
function rowsOf(push: Push) {
  return database.db
    .select()
    .from(payments)
    .where(
      or(
        inArray(payments.providerRef, [push.receipt, `stk:${push.checkoutId}`]),
        inArray(payments.accountReference, [`intent ${push.intentId}`, `checkout ${push.checkoutId}`]),
      ),
    )
    .orderBy(payments.id);
}

const paymentCredits = async (customerId: number) =>
  (
    await database.db
      .select()
      .from(ledgerEntries)
      .where(and(eq(ledgerEntries.customerId, customerId), eq(ledgerEntries.kind, "payment")))
  ).map((e) => e.amountCents);

const notCreditedSms = async (phone: string) =>
  (
    await database.db
      .select()
      .from(messageOutbox)
      .where(and(eq(messageOutbox.recipient, phone), eq(messageOutbox.template, "payment_not_credited")))
  ).length;

const orders: Route[][] = [
  ["paybill", "query", "callback"],
  ["paybill", "callback", "query"],
  ["query", "paybill", "callback"],
  ["query", "callback", "paybill"],
  ["callback", "paybill", "query"],
  ["callback", "query", "paybill"],
];

describe.each([
  ["an open account", false],
  ["a closed account (sign-up rejected)", true],
])("one paid push, %s", (_name, closed) => {
  it.each(orders.map((order) => [order.join(" → "), order] as const))(
    "%s: one payment row at every step; credited once, or queued once",
    async (_order, order) => {
      const push = await pushedSignup(closed);
      for (const route of order) {
        clock.advance(MINUTE);
        await arrive(push, route);
        const rows = await rowsOf(push);
        expect(rows, `after the ${route}`).toHaveLength(1);
        expect(rows[0], `after the ${route}`).toMatchObject(
          closed
            ? { status: "unmatched", customerId: null }
            : { status: "applied", customerId: push.customerId },
        );
        expect(await paymentCredits(push.customerId), `after the ${route}`).toEqual(closed ? [] : [PRICE]);
      }
      const [row] = await rowsOf(push);
      expect(row!.providerRef).toBe(push.receipt);
      const [settled] = await database.db
        .select()
        .from(paymentIntents)
        .where(eq(paymentIntents.id, push.intentId));
      expect(settled).toMatchObject({ status: "succeeded", mpesaReceipt: push.receipt, paymentId: row!.id });
      expect(await notCreditedSms(push.phone)).toBe(closed ? 1 : 0);
    },
  );
});

describe("a closed account's push paid, its paybill confirmation and status query in, its callback late", () => {
  it("the admin can give the money back once; the callback then changes nothing", async () => {
    const push = await pushedSignup(true);
    clock.advance(MINUTE);
    await arrive(push, "paybill");
    clock.advance(2 * MINUTE);
    await arrive(push, "query");

    const queued = (await rowsOf(push)).filter((p) => p.status === "unmatched");
    const refunds = await Promise.allSettled(
      queued.map((p) => markUnmatchedRefunded(ctx, admin, { paymentId: p.id, reason: "reversed on M-Pesa" })),
    );
    expect(refunds.filter((r) => r.status === "fulfilled")).toHaveLength(1);

    clock.advance(MINUTE);
    await arrive(push, "callback");
    expect((await rowsOf(push)).map((p) => [p.providerRef, p.status])).toEqual([[push.receipt, "refunded"]]);
    expect(await paymentCredits(push.customerId)).toEqual([]);
  });
});

describe("a closed account's paybill confirmation given back before the push's status query", () => {
  it("the status query takes the push for that payment: nothing is queued to give back again", async () => {
    const push = await pushedSignup(true);
    clock.advance(MINUTE);
    await arrive(push, "paybill");
    const [paybill] = await rowsOf(push);
    await markUnmatchedRefunded(ctx, admin, { paymentId: paybill!.id, reason: "reversed on M-Pesa" });
    for (const route of ["query", "callback"] as const) {
      clock.advance(2 * MINUTE);
      await arrive(push, route);
      expect(
        (await rowsOf(push)).map((p) => [p.id, p.status]),
        `after the ${route}`,
      ).toEqual([[paybill!.id, "refunded"]]);
    }
    expect(await paymentCredits(push.customerId)).toEqual([]);
    expect(await notCreditedSms(push.phone)).toBe(1);
  });
});

describe("two pushes a paybill payment could be the record of", () => {
  it("the status query of one does not take it for its own: the push is held for an admin, credited once", async () => {
    const push = await pushedSignup(false);
    // A second prompt for the same amount to the same account, sent moments later.
    await acceptedBalancePush(ctx, {
      customerId: push.customerId,
      phone: push.phone,
      amountCents: PRICE,
      checkoutId: `${push.checkoutId}_again`,
      accountReference: push.accountNumber,
      sentAt: new Date(push.sentAt.getTime() + 30_000),
    });
    clock.advance(MINUTE);
    await arrive(push, "paybill");
    clock.advance(2 * MINUTE);
    expect(await arrive(push, "query")).toMatchObject({ status: "queued" });
    const [settled] = await database.db
      .select()
      .from(paymentIntents)
      .where(eq(paymentIntents.id, push.intentId));
    expect(settled).toMatchObject({
      status: "succeeded",
      mpesaReceipt: null,
      resultDesc: "Paid: held for review",
    });
    expect(await paymentCredits(push.customerId)).toEqual([PRICE]);
  });
});

describe("a push's money an admin took out of the queue before its callback named it", () => {
  it("given back, then its callback: nothing is credited or queued again", async () => {
    const push = await pushedSignup(true);
    clock.advance(3 * MINUTE);
    await arrive(push, "query");
    const [held] = await rowsOf(push);
    await markUnmatchedRefunded(ctx, admin, { paymentId: held!.id, reason: "reversed on M-Pesa" });
    for (const route of ["callback", "paybill"] as const) {
      clock.advance(MINUTE);
      await arrive(push, route);
    }
    expect((await rowsOf(push)).map((p) => [p.id, p.providerRef, p.status])).toEqual([
      [held!.id, push.receipt, "refunded"],
    ]);
    expect(await paymentCredits(push.customerId)).toEqual([]);
  });

  it("placed on the account once it was resubscribed, then its callback: credited once", async () => {
    const push = await pushedSignup(true);
    clock.advance(3 * MINUTE);
    await arrive(push, "query");
    const [held] = await rowsOf(push);
    await resubscribe(ctx, admin, { customerId: push.customerId, planId: push.planId });
    await assignUnmatchedPayment(ctx, admin, { paymentId: held!.id, accountNumber: push.accountNumber });
    for (const route of ["callback", "paybill"] as const) {
      clock.advance(MINUTE);
      await arrive(push, route);
    }
    expect((await rowsOf(push)).map((p) => [p.id, p.providerRef, p.status])).toEqual([
      [held!.id, push.receipt, "applied"],
    ]);
    expect(await paymentCredits(push.customerId)).toEqual([PRICE]);
  });
});

describe("a push held as possibly a paybill payment's money, given back by an admin, then its callback", () => {
  // The paybill payment is dated minutes from the push (a clock off at one end): too far to be taken
  // for the push's own, so the status query's "paid" waits beside it for an admin.
  async function heldBeside(closed: boolean) {
    const push = await pushedSignup(closed);
    clock.advance(MINUTE);
    await arrive(push, "paybill", 3 * MINUTE);
    clock.advance(2 * MINUTE);
    expect(await arrive(push, "query")).toMatchObject({ status: "queued" });
    const rows = await rowsOf(push);
    const paybill = rows.find((p) => p.providerRef === push.receipt)!;
    const held = rows.find((p) => p.providerRef === `stk:${push.checkoutId}`)!;
    expect(held).toMatchObject({ status: "unmatched" });
    await markUnmatchedRefunded(ctx, admin, { paymentId: held.id, reason: "reversed on M-Pesa" });
    clock.advance(MINUTE);
    await arrive(push, "callback");
    return { push, paybill, held };
  }

  it("the paybill payment still queued (a closed account) leaves the queue: it cannot be given back again", async () => {
    const { push, paybill, held } = await heldBeside(true);
    const [after] = await database.db.select().from(payments).where(eq(payments.id, paybill.id));
    expect(after).toMatchObject({
      status: "duplicate",
      holdReason: `the same money as push payment #${held.id}, given back already`,
    });
    await expect(
      markUnmatchedRefunded(ctx, admin, { paymentId: paybill.id, reason: "reversed on M-Pesa" }),
    ).rejects.toThrow(/not waiting to be assigned/);
    expect(await paymentCredits(push.customerId)).toEqual([]);
  });

  it("the paybill payment credited (an open account): the admins are told it was paid out twice", async () => {
    const { push, paybill, held } = await heldBeside(false);
    expect(await paymentCredits(push.customerId)).toEqual([PRICE]);
    const alerts = creditedTwiceAlertsFor(database.db, () => clock.now(), -100_778);
    expect(await alerts.tell()).toEqual({ queued: 1, creditedTwice: 1 });
    const text = await alerts.text();
    expect(text).toContain(
      `M-Pesa payment ${push.receipt} was paid out twice: KES 1,000 to ${push.accountNumber} as paybill payment #${paybill.id}, and KES 1,000 given back as the push payment #${held.id}`,
    );
    expect(text).toContain(`/adjust ${push.accountNumber} -1,000 <reason> charges the credit back`);
    expect(await alerts.tell()).toEqual({ creditedTwice: 0 });
  });
});

describe.runIf(onRealPostgres())("a closed account's status query and paybill confirmation at once", () => {
  it("whichever reaches the account first, the other finds it: one row in the queue", async () => {
    for (let round = 0; round < 3; round++) {
      const push = await pushedSignup(true);
      clock.advance(3 * MINUTE);
      // Another session holds the account's money, so each gets as far as it can before writing.
      const held = await holdLock(
        database.url!,
        (tx) => tx`select id from customers where id = ${push.customerId} for no key update`,
      );
      try {
        const settling = Promise.all([arrive(push, "query"), arrive(push, "paybill")]);
        await eventually(waitingForLocks(database.db, 2), 15_000);
        await held.release();
        await settling;
      } finally {
        await held.release();
      }
      const rows = await rowsOf(push);
      expect(rows.map((p) => [p.providerRef, p.status])).toEqual([[push.receipt, "unmatched"]]);
      expect(await notCreditedSms(push.phone)).toBe(1);
    }
  });
});
