import { eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { FakeClock } from "../../src/clock.ts";
import { messageOutbox, paymentIntents, payments, vouchers } from "../../src/db/schema/index.ts";
import { createPlan } from "../support/billing.ts";
import { adminWorldForFile, auditRows, lastText, OWNER } from "./world.ts";

/**
 * `/sell_voucher`: a voucher bought by M-Pesa and not delivered (its plan retired meanwhile) holds
 * its payment in /unmatched; the admin sells the payer a code of a plan on sale at that price.
 */

const clock = new FakeClock("2026-09-01T08:00:00Z");
const SUPPORT = 6_700_002;
const world = adminWorldForFile(clock, [{ id: SUPPORT, role: "support", name: "Sam" }]);

/** As credit.ts's deliverSale leaves a sale it could not deliver. */
async function heldSale(receipt: string, phone: string, amountCents: number) {
  const [intent] = await world.db
    .insert(paymentIntents)
    .values({
      phone,
      purpose: "voucher",
      amountCents,
      channel: "ussd",
      language: "sw",
      status: "succeeded",
      updatedAt: clock.now(),
    })
    .returning();
  const [payment] = await world.db
    .insert(payments)
    .values({
      method: "mpesa_stk",
      provider: "mpesa",
      providerRef: receipt,
      amountCents,
      phone,
      status: "unmatched",
      accountReference: `voucher ${intent!.id}`,
      holdReason:
        "voucher not delivered (That plan does not exist or is retired.): refund it or sell another",
      receivedAt: clock.now(),
    })
    .returning();
  return payment!;
}

describe("/sell_voucher", () => {
  it("texts the payer a code of a plan at the price paid, once; the payment leaves the queue", async () => {
    const plan = await createPlan(world.db, { kind: "hotspot", code: "day-70", priceCents: 7_000 });
    const dearer = await createPlan(world.db, { kind: "hotspot", code: "week-150", priceCents: 15_000 });
    const payment = await heldSale("TLK8HELD01", "+254711000931", 7_000);

    await world.say(SUPPORT, `/sell_voucher ${payment.providerRef} ${plan.code}`);
    expect(lastText(world.fake, SUPPORT)).toMatch(/Your role \(support\) may not use \/sell_voucher/);
    for (const [typed, answer] of [
      ["/sell_voucher", /Say the receipt number/],
      [`/sell_voucher ${payment.providerRef}`, /Say the receipt number/],
      [`/sell_voucher ${payment.providerRef} nosuch`, /^No plan nosuch\./],
      [`/sell_voucher ${payment.providerRef} ${dearer.code}`, /KES 70 was paid and .* costs KES 150/],
    ] as const) {
      await world.say(OWNER, typed);
      expect(lastText(world.fake, OWNER)).toMatch(answer);
    }
    expect(await world.db.select().from(vouchers).where(eq(vouchers.soldToPhone, "+254711000931"))).toEqual(
      [],
    );

    await world.say(OWNER, `/sell_voucher #${payment.id} ${plan.code}`);
    expect(lastText(world.fake, OWNER)).toMatch(
      /^✅ TLK8HELD01 \(KES 70\): a .* voucher is texted to 0711 000931, valid until .*\. The payment has left the queue\.$/,
    );
    const [voucher] = await world.db.select().from(vouchers).where(eq(vouchers.soldToPhone, "+254711000931"));
    expect(voucher).toMatchObject({ status: "sold", planId: plan.id });
    const texted = await world.db
      .select()
      .from(messageOutbox)
      .where(eq(messageOutbox.recipient, "+254711000931"));
    expect(texted).toMatchObject([
      { template: "voucher_code", language: "sw", params: { code: voucher!.code } },
    ]);
    const [after] = await world.db.select().from(payments).where(eq(payments.id, payment.id));
    expect(after).toMatchObject({ status: "applied", holdReason: null });
    expect(await auditRows(world.db, "payment.voucher_sold", `tg:${OWNER}`)).toHaveLength(1);

    await world.say(OWNER, `/sell_voucher #${payment.id} ${plan.code}`);
    expect(lastText(world.fake, OWNER)).toMatch(/is not waiting to be assigned/);
    expect(
      await world.db.select().from(vouchers).where(eq(vouchers.soldToPhone, "+254711000931")),
    ).toHaveLength(1);
  });

  it("refuses money that was not a voucher sale", async () => {
    const plan = await createPlan(world.db, { kind: "hotspot", code: "day-50", priceCents: 5_000 });
    const [paybill] = await world.db
      .insert(payments)
      .values({
        method: "mpesa_c2b",
        provider: "mpesa",
        providerRef: "TLK8NOACC1",
        amountCents: 5_000,
        phone: "+254711000932",
        status: "unmatched",
        accountReference: "ZZ999",
        holdReason: "no account ZZ999",
        receivedAt: clock.now(),
      })
      .returning();
    await world.say(OWNER, `/sell_voucher ${paybill!.providerRef} ${plan.code}`);
    expect(lastText(world.fake, OWNER)).toMatch(
      /not for a voucher: \/assign it to an account, or \/refunded it/,
    );
    const [after] = await world.db.select().from(payments).where(eq(payments.id, paybill!.id));
    expect(after!.status).toBe("unmatched");
  });
});
