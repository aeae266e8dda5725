import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { requestPayment } from "../../src/billing/intents/request.ts";
import { settleStkResult } from "../../src/billing/intents/settle.ts";
import { recordPaybillPayment } from "../../src/billing/paybill.ts";
import { resubscribe } from "../../src/billing/resubscribe.ts";
import { rejectSignup } from "../../src/billing/signups.ts";
import { FakeClock } from "../../src/clock.ts";
import { messageOutbox, paymentIntents, payments, subscriptions } from "../../src/db/schema/index.ts";
import { admin, ledgerSum, selfSignedUp } from "../support/billing.ts";
import { adminWorldForFile, lastMenuIn, lastText, lastToast, OWNER } from "./world.ts";

/**
 * Money for a self sign-up an admin rejected: it waits in the admin's unmatched queue with the
 * reason, never on the closed account, and the payer is told it was not credited.
 */

const clock = new FakeClock("2026-04-01T06:00:00Z");
const world = adminWorldForFile(clock);
const mpesa = { kind: "webhook", id: "mpesa" } as const;

let phoneSeq = 0;
async function signedUp(priceCents = 100_000) {
  const phone = `+2547126${String(++phoneSeq).padStart(5, "0")}`;
  const { customer, subscription, plan } = await selfSignedUp(world.ctx, {
    phone,
    name: `Applicant ${phoneSeq}`,
    priceCents,
    language: "sw",
    planName: "Home",
  });
  return { customer, subscription, plan };
}

const smsTo = async (phone: string) =>
  (await world.db.select().from(messageOutbox).where(eq(messageOutbox.recipient, phone))).map(
    (m) => m.template,
  );

const paymentOf = async (ref: string) =>
  (await world.db.select().from(payments).where(eq(payments.providerRef, ref)))[0]!;

describe("a payment for a rejected sign-up", () => {
  it("by paybill waits in /unmatched with the reason, off the account, and the payer is told it was not credited", async () => {
    const { customer, subscription } = await signedUp();
    await rejectSignup(world.ctx, admin, { subscriptionId: subscription.id, reason: "area not served" });

    const paid = await recordPaybillPayment(world.ctx, mpesa, {
      transId: "RJT0000001",
      billRef: customer.accountNumber,
      amountCents: 100_000,
      payerName: "AMINA",
    });
    expect(paid).toMatchObject({ matched: false, duplicate: false, customerId: null });
    expect(await ledgerSum(world.db, customer.id)).toBe(0);
    expect(await paymentOf("RJT0000001")).toMatchObject({ status: "unmatched", customerId: null });

    await world.say(OWNER, "/unmatched");
    expect(lastText(world.fake, OWNER)).toMatch(
      new RegExp(
        `• #\\d+ RJT0000001 KES 1,000 .* ref "${customer.accountNumber}" from AMINA — account ${customer.accountNumber}'s sign-up was rejected`,
      ),
    );
    // Told in their language that the money was not credited; never a receipt showing a balance.
    expect(await smsTo(customer.phone)).toEqual(["welcome", "signup_rejected", "payment_not_credited"]);

    // The same receipt again changes nothing and tells nobody twice.
    const again = await recordPaybillPayment(world.ctx, mpesa, {
      transId: "RJT0000001",
      billRef: customer.accountNumber,
      amountCents: 100_000,
    });
    expect(again.duplicate).toBe(true);
    expect(await smsTo(customer.phone)).toEqual(["welcome", "signup_rejected", "payment_not_credited"]);
  });

  it("by an STK prompt is held the same way, and cannot be assigned back to the closed account", async () => {
    const { customer, subscription, plan } = await signedUp();
    const asked = await requestPayment(
      world.ctx,
      { kind: "subscriber", id: customer.phone },
      {
        phone: customer.phone,
        purpose: "balance",
        amountCents: 100_000,
        customerId: customer.id,
        channel: "ussd",
      },
    );
    if (!asked.ok) throw new Error(asked.message);
    await world.db
      .update(paymentIntents)
      .set({ checkoutRequestId: `ws_CO_reject_${asked.intentId}` })
      .where(eq(paymentIntents.id, asked.intentId));
    // The admin rejects while the prompt is on the phone; the payer pays it after.
    await rejectSignup(world.ctx, admin, { subscriptionId: subscription.id, reason: "area not served" });
    const settled = await settleStkResult(world.ctx, mpesa, {
      checkoutRequestId: `ws_CO_reject_${asked.intentId}`,
      outcome: "paid",
      reason: "The service request is processed successfully.",
      receipt: "RJT0000002",
      amountCents: 100_000,
      phone: customer.phone,
      source: "callback",
    });
    expect(settled.status).toBe("queued");
    expect(await ledgerSum(world.db, customer.id)).toBe(0);
    expect(await paymentOf("RJT0000002")).toMatchObject({ status: "unmatched", customerId: null });
    expect(await smsTo(customer.phone)).toEqual(["welcome", "signup_rejected", "payment_not_credited"]);

    await world.say(OWNER, "/unmatched");
    expect(lastText(world.fake, OWNER)).toMatch(
      new RegExp(`RJT0000002 KES 1,000 .* — account ${customer.accountNumber}'s sign-up was rejected`),
    );
    await world.say(OWNER, `/assign RJT0000002 ${customer.accountNumber}`);
    expect(lastText(world.fake, OWNER)).toMatch(
      `${customer.accountNumber}'s sign-up was rejected: money placed there would reach nobody`,
    );
    expect(await paymentOf("RJT0000002")).toMatchObject({ status: "unmatched" });
    expect(await ledgerSum(world.db, customer.id)).toBe(0);

    // Brought back as a customer, the account takes it: nothing was lost on the way.
    await resubscribe(world.ctx, admin, { customerId: customer.id, planId: plan.id });
    await world.say(OWNER, `/assign RJT0000002 ${customer.accountNumber}`);
    expect(lastText(world.fake, OWNER)).toMatch(/RJT0000002 \(KES 1,000\) credited to .*Balance now KES 0/);
  });

  it("cash for the closed account is refused, nothing recorded", async () => {
    const { customer, subscription } = await signedUp();
    await rejectSignup(world.ctx, admin, { subscriptionId: subscription.id, reason: "duplicate sign-up" });
    await world.say(OWNER, `/pay ${customer.accountNumber} 1000`);
    await world.press(OWNER, "Confirm", OWNER, lastMenuIn(world.fake, OWNER));
    expect(lastToast(world.fake)).toBe(
      `Not recorded: ${customer.accountNumber}'s sign-up was rejected. Resubscribe it first, or give the cash back.`,
    );
    expect(await ledgerSum(world.db, customer.id)).toBe(0);
    expect(
      await world.db
        .select()
        .from(payments)
        .where(and(eq(payments.method, "cash"), eq(payments.amountCents, 100_000))),
    ).toEqual([]);
  });
});

describe("rejecting a sign-up that holds money", () => {
  it("is refused while part of the first bill is paid: the money stays on the live account", async () => {
    const { customer, subscription } = await signedUp();
    await recordPaybillPayment(world.ctx, mpesa, {
      transId: "RJT0000003",
      billRef: customer.accountNumber,
      amountCents: 40_000,
    });
    await world.say(OWNER, "/signups");
    await world.press(OWNER, "Reject", OWNER, lastMenuIn(world.fake, OWNER));
    await world.press(OWNER, "Confirm", OWNER, lastMenuIn(world.fake, OWNER));
    expect(lastToast(world.fake)).toBe(
      `${customer.accountNumber} has KES 400 paid in already: approve the sign-up, or give the money back and take it off the balance, then reject. (/adjust ${customer.accountNumber} -<amount> <reason>)`,
    );
    const [still] = await world.db.select().from(subscriptions).where(eq(subscriptions.id, subscription.id));
    expect(still!.status).toBe("pending");
    expect(await paymentOf("RJT0000003")).toMatchObject({ status: "applied", customerId: customer.id });
    expect(await ledgerSum(world.db, customer.id)).toBe(40_000 - 100_000);
    expect(await smsTo(customer.phone)).toEqual(["welcome", "payment_received"]);
  });
});
