import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { settleStkResult } from "../../src/billing/intents/settle.ts";
import { FakeClock } from "../../src/clock.ts";
import { paymentIntents, payments, subscriptions } from "../../src/db/schema/index.ts";
import { acceptedBalancePush, ledgerSum, selfSignedUp, uniquePhone } from "../support/billing.ts";
import { adminWorldForFile, auditRows, lastMenuIn, lastText, OWNER } from "./world.ts";

/**
 * `/prompt_paid`: a payment prompt M-Pesa never said the result of, found paid on its statement,
 * is credited under the statement's receipt, once, as its callback would have been.
 */

const clock = new FakeClock("2026-05-01T08:00:00Z");
const SUPPORT = 6_600_002;
const world = adminWorldForFile(clock, [{ id: SUPPORT, role: "support", name: "Sam" }]);

/** A new subscriber's first period, prompted for and left as the recovery job leaves it: unresolved. */
async function unresolvedFirstPayment(name: string) {
  const phone = uniquePhone();
  const signedUp = await selfSignedUp(world.ctx, { phone, name, priceCents: 150_000 });
  const intentId = await acceptedBalancePush(world.ctx, {
    customerId: signedUp.customer.id,
    phone,
    amountCents: 150_000,
    checkoutId: `ws_CO_${name.replace(/\W/g, "")}`,
    accountReference: signedUp.accountNumber,
    sentAt: clock.now(),
  });
  await world.db
    .update(paymentIntents)
    .set({ status: "timed_out", unresolvedAt: clock.now(), nextQueryAt: null })
    .where(eq(paymentIntents.id, intentId));
  return { ...signedUp, phone, intentId };
}

const intentOf = async (id: number) =>
  (await world.db.select().from(paymentIntents).where(eq(paymentIntents.id, id)))[0]!;

describe("/prompt_paid", () => {
  it("credits an unanswered prompt under the statement's receipt, once, and starts the service", async () => {
    const { customer, subscription, intentId, accountNumber } = await unresolvedFirstPayment("Amina Paid");

    await world.say(SUPPORT, `/prompt_paid #${intentId} TLK4ABC12Q`);
    expect(lastText(world.fake, SUPPORT)).toMatch(/Your role \(support\) may not use \/prompt_paid/);
    for (const [typed, answer] of [
      ["/prompt_paid", /Say the prompt's number/],
      [`/prompt_paid #${intentId}`, /Say the prompt's number/],
      ["/prompt_paid #abc TLK4ABC12Q", /is not a payment prompt's number/],
      [`/prompt_paid #${intentId} TLK-4ABC`, /is not an M-Pesa receipt number/],
      ["/prompt_paid #99999999 TLK4ABC12Q", /^No payment prompt #99999999\.$/],
    ] as const) {
      await world.say(OWNER, typed);
      expect(lastText(world.fake, OWNER)).toMatch(answer);
    }

    await world.say(OWNER, `/prompt_paid ${intentId} tlk4abc12q`);
    const question = lastMenuIn(world.fake, OWNER);
    expect(String(question.payload.text)).toMatch(
      new RegExp(
        `^Payment prompt #${intentId}: KES 1,500 from \\+254\\d+, sent .*\\. Record it as paid with receipt TLK4ABC12Q and credit it to ${accountNumber}\\?`,
      ),
    );
    expect(await ledgerSum(world.db, customer.id)).toBe(-150_000);
    await Promise.all([
      world.press(OWNER, "Confirm", OWNER, question),
      world.press(OWNER, "Confirm", OWNER, question),
    ]);
    expect(lastText(world.fake, OWNER)).toBe(
      `✅ Paid, payment prompt #${intentId}: TLK4ABC12Q (KES 1,500) credited to ${accountNumber}; the payer is told as after any payment.`,
    );
    expect(await ledgerSum(world.db, customer.id)).toBe(0);
    expect(await intentOf(intentId)).toMatchObject({ status: "succeeded", mpesaReceipt: "TLK4ABC12Q" });
    const recorded = await world.db.select().from(payments).where(eq(payments.providerRef, "TLK4ABC12Q"));
    expect(recorded).toMatchObject([{ customerId: customer.id, method: "mpesa_stk", status: "applied" }]);
    const [served] = await world.db.select().from(subscriptions).where(eq(subscriptions.id, subscription.id));
    expect(served!.status).toBe("active");
    expect(await auditRows(world.db, "payment_intent.paid_by_statement", `tg:${OWNER}`)).toHaveLength(1);

    // Asked again, or the callback arriving at last: the same money is not credited twice.
    await world.say(OWNER, `/prompt_paid #${intentId} TLK4ABC12Q`);
    expect(lastText(world.fake, OWNER)).toMatch(/is succeeded: M-Pesa gave its result/);
    const late = await settleStkResult(
      world.ctx,
      { kind: "webhook", id: "mpesa" },
      {
        checkoutRequestId: (await intentOf(intentId)).checkoutRequestId!,
        outcome: "paid",
        reason: "The service request is processed successfully.",
        receipt: "TLK4ABC12Q",
        amountCents: 150_000,
        phone: recorded[0]!.phone,
        source: "callback",
      },
    );
    expect(late.status).toBe("duplicate");
    expect(await ledgerSum(world.db, customer.id)).toBe(0);
  });

  it("refuses a receipt already recorded for other money, and a prompt whose result M-Pesa gave", async () => {
    const first = await unresolvedFirstPayment("Baraka Typo");
    await world.db.insert(payments).values({
      method: "mpesa_c2b",
      provider: "mpesa",
      providerRef: "TLK0THERS1",
      amountCents: 150_000,
      phone: "+254700000001",
      status: "applied",
      receivedAt: clock.now(),
    });
    await world.say(OWNER, `/prompt_paid #${first.intentId} TLK0THERS1`);
    await world.press(OWNER, "Confirm");
    expect(lastText(world.fake, OWNER)).not.toMatch(/✅/);
    expect(world.fake.callsOf("answerCallbackQuery").at(-1)?.payload.text).toMatch(
      /Receipt TLK0THERS1 is already recorded \(payment #\d+, applied\)/,
    );
    expect(await ledgerSum(world.db, first.customer.id)).toBe(-150_000);
    expect(await intentOf(first.intentId)).toMatchObject({ status: "timed_out", paymentId: null });

    await world.db
      .update(paymentIntents)
      .set({ status: "cancelled" })
      .where(eq(paymentIntents.id, first.intentId));
    await world.say(OWNER, `/prompt_paid #${first.intentId} TLK5NEW123`);
    expect(lastText(world.fake, OWNER)).toBe(
      `Payment prompt #${first.intentId} is cancelled: M-Pesa gave its result, so there is nothing to record.`,
    );
  });

  it("credits a prompt whose acceptance M-Pesa never confirmed, and leaves it without a checkout id", async () => {
    // As the dispatcher leaves a push whose answer was lost (dispatch.ts: `pushUncertain`).
    const { customer, intentId, accountNumber } = await unresolvedFirstPayment("Chebet Uncertain");
    await world.db
      .update(paymentIntents)
      .set({ checkoutRequestId: null, pushUncertain: true })
      .where(eq(paymentIntents.id, intentId));
    await world.say(OWNER, `/prompt_paid #${intentId} TLK7UNSUR1`);
    await world.press(OWNER, "Confirm");
    expect(lastText(world.fake, OWNER)).toMatch(new RegExp(`credited to ${accountNumber}`));
    expect(await ledgerSum(world.db, customer.id)).toBe(0);
    expect(await intentOf(intentId)).toMatchObject({
      status: "succeeded",
      mpesaReceipt: "TLK7UNSUR1",
      checkoutRequestId: null,
    });
  });
});
