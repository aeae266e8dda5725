import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BillingContext } from "../../src/billing/context.ts";
import { settleStkResult } from "../../src/billing/intents/settle.ts";
import { recordPaybillPayment } from "../../src/billing/paybill.ts";
import { FakeClock, MINUTE } from "../../src/clock.ts";
import { ledgerEntries, paymentIntents, payments } from "../../src/db/schema/index.ts";
import { acceptedBalancePush, activeSubscriber, billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

/**
 * A payer who cancels a prompt and asks again moments later pays the second one. Its callback is
 * late; its paybill confirmation is in, then the recovery job's status query says "paid". The
 * cancelled prompt was never paid, so the confirmation can only be the second push's: one payment,
 * one row, nothing held for an admin to credit a second time.
 */

const PRICE = 150_000;
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

const pushed = (customerId: number, phone: string, accountNumber: string, checkoutId: string) =>
  acceptedBalancePush(ctx, {
    customerId,
    phone,
    amountCents: PRICE,
    checkoutId,
    accountReference: accountNumber,
    sentAt: clock.now(),
  });

describe("a cancelled prompt, then a paid one: confirmation first, then the status query", () => {
  it("the status query takes the confirmation for the paid push: credited once, nothing queued", async () => {
    const plan = await createPlan(database.db, { priceCents: PRICE });
    const { customer } = await activeSubscriber(ctx, plan.id);
    const first = await pushed(customer.id, customer.phone, customer.accountNumber, "ws_CO_cancelled_1");
    await settleStkResult(ctx, mpesa, {
      checkoutRequestId: "ws_CO_cancelled_1",
      outcome: "cancelled",
      reason: "Request cancelled by user",
      providerCode: 1032,
      source: "callback",
    });
    clock.advance(30_000);
    const second = await pushed(customer.id, customer.phone, customer.accountNumber, "ws_CO_paid_2");
    const sentAt = clock.now();
    clock.advance(MINUTE);
    await recordPaybillPayment(ctx, mpesa, {
      transId: "RDC0000001",
      billRef: customer.accountNumber,
      amountCents: PRICE,
      paidAt: new Date(sentAt.getTime() + 40_000),
    });
    clock.advance(2 * MINUTE);
    await settleStkResult(ctx, mpesa, {
      checkoutRequestId: "ws_CO_paid_2",
      outcome: "paid",
      reason: "The service request is processed successfully.",
      source: "query",
    });

    const rows = await database.db
      .select({ ref: payments.providerRef, status: payments.status })
      .from(payments)
      .where(eq(payments.phone, customer.phone));
    expect(rows.filter((r) => r.status === "unmatched")).toEqual([]);
    const credits = await database.db
      .select()
      .from(ledgerEntries)
      .where(and(eq(ledgerEntries.customerId, customer.id), eq(ledgerEntries.kind, "payment")));
    expect(credits.map((c) => c.memo).filter((m) => m?.startsWith("mpesa"))).toEqual([
      "mpesa_c2b RDC0000001",
    ]);
    const [paid] = await database.db.select().from(paymentIntents).where(eq(paymentIntents.id, second));
    expect(paid).toMatchObject({ status: "succeeded", mpesaReceipt: "RDC0000001" });
    const [cancelled] = await database.db.select().from(paymentIntents).where(eq(paymentIntents.id, first));
    expect(cancelled!.status).toBe("cancelled");
  });
});
