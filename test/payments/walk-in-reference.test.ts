import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BillingContext } from "../../src/billing/context.ts";
import { intentIdOfWalkInReference, walkInReference } from "../../src/billing/intents/walk-in-reference.ts";
import { FakeClock } from "../../src/clock.ts";
import { customers, vouchers } from "../../src/db/schema/index.ts";
import { activeSubscriber, billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { freshPhone, type Harness, intent, pay, paymentCredits, startHarness } from "./harness.ts";
import { c2bConfirmation, c2bConfirmUrl, postRaw } from "./inbox-support.ts";

/**
 * A walk-in's push shows `TDW<intent id>` as the account, and a paybill payment quoting it pays that
 * push. M-Pesa shows 12 characters: an id of ten digits must not be cut into another push's name.
 */

const shortcode = "174379";
let database: TestDatabase;
let h: Harness;
const clock = new FakeClock("2026-04-01T08:00:00Z");
let ctx: BillingContext;
let hotspot: { id: number; priceCents: number };

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  h = await startHarness(ctx, { fake: { shortcode }, routes: { shortcode } });
  hotspot = await createPlan(database.db, { priceCents: 5_000, kind: "hotspot", periodUnit: "days" });
});
afterAll(async () => {
  await h?.close();
  await database?.close();
});

const walkInPush = async (phone: string) =>
  pay(
    h,
    ctx,
    { phone, amountCents: hotspot.priceCents, purpose: "voucher", planId: hotspot.id },
    { outcome: "success", delayMs: 0, lost: true },
  );

describe("walk-in references past nine digits", () => {
  it("name their own push, never the push whose id they would start with", async () => {
    await database.db.execute(sql`alter table payment_intents alter column id restart with 100000000`);
    const earlier = await walkInPush(freshPhone());
    expect(earlier.accountReference).toBe("TDW100000000");
    await database.db.execute(sql`alter table payment_intents alter column id restart with 1000000001`);
    const phone = freshPhone();
    const wide = await walkInPush(phone);
    expect(wide.id).toBe(1_000_000_001);
    expect(wide.accountReference).not.toBe(earlier.accountReference);
    expect(wide.accountReference!.length).toBeLessThanOrEqual(12);
    const shown = h.fake.pushes.find((p) => p.checkoutRequestId === wide.checkoutRequestId)!;
    expect(shown.accountReference).toBe(wide.accountReference);

    // The payer's paybill confirmation quotes what their phone showed: it pays that push.
    const answer = await postRaw(
      c2bConfirmUrl(h),
      JSON.stringify(
        c2bConfirmation({
          transId: shown.receipt!,
          billRef: wide.accountReference!.toLowerCase(),
          amount: (hotspot.priceCents / 100).toFixed(2),
          shortcode,
          paidAt: new Date(wide.sentAt!.getTime() + 40_000),
        }),
      ),
    );
    expect(answer.status).toBe(200);
    expect(await intent(database.db, wide.id)).toMatchObject({ status: "succeeded" });
    expect(await intent(database.db, earlier.id)).toMatchObject({ status: "pending" });
    expect(await database.db.select().from(vouchers).where(eq(vouchers.soldToPhone, phone))).toHaveLength(1);
  });

  it("read back to the id they were made from, and nothing else", () => {
    for (const id of [1, 42, 999_999_999, 1_000_000_000, 1_000_000_001, 2_147_483_647]) {
      const reference = walkInReference(id);
      expect(reference.length, reference).toBeLessThanOrEqual(12);
      expect(intentIdOfWalkInReference(reference)).toBe(id);
    }
    for (const other of ["TDW", "TDWX", "TDW1234567890", "TDWX0", "TDWXZZZZZZZ", "TDWX1", "TD1234", "TDWX-1"])
      expect(intentIdOfWalkInReference(other), other).toBeNull();
  });
});

describe("a customer whose account number is longer than M-Pesa shows", () => {
  it("is prompted with the push's own name, so a paybill confirmation of it credits them, not an account it would cut into", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const long = await activeSubscriber(ctx, plan.id, "Long Account");
    const short = await activeSubscriber(ctx, plan.id, "Short Account");
    await database.db
      .update(customers)
      .set({ accountNumber: "ACME-NAIROBI-00123" })
      .where(eq(customers.id, long.customer.id));
    await database.db
      .update(customers)
      .set({ accountNumber: "ACME-NAIROBI" })
      .where(eq(customers.id, short.customer.id));
    const before = {
      long: await paymentCredits(database.db, long.customer.id),
      short: await paymentCredits(database.db, short.customer.id),
    };
    const sent = await pay(
      h,
      ctx,
      { customerId: long.customer.id, phone: long.customer.phone, amountCents: 40_000 },
      { outcome: "success", delayMs: 0, lost: true },
    );
    const shown = h.fake.pushes.find((p) => p.checkoutRequestId === sent.checkoutRequestId)!;
    expect(shown.accountReference).toBe(walkInReference(sent.id));

    // M-Pesa's paybill confirmation of that payment comes before its callback.
    const answer = await postRaw(
      c2bConfirmUrl(h),
      JSON.stringify(
        c2bConfirmation({
          transId: shown.receipt!,
          billRef: shown.accountReference,
          amount: "400.00",
          shortcode,
          paidAt: new Date(sent.sentAt!.getTime() + 30_000),
        }),
      ),
    );
    expect(answer.status).toBe(200);
    await h.fake.postCallback(h.stkUrl, shown.body);
    expect(await paymentCredits(database.db, long.customer.id)).toEqual([...before.long, 40_000]);
    expect(await paymentCredits(database.db, short.customer.id)).toEqual(before.short);
    expect(await intent(database.db, sent.id)).toMatchObject({
      status: "succeeded",
      mpesaReceipt: shown.receipt,
    });
  });
});
