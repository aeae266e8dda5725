import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeClock } from "../../src/clock.ts";
import { activeSubscriber, billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { type Harness, paymentCredits, startHarness } from "./harness.ts";
import { c2bConfirmation, c2bConfirmUrl, freshReceipt, paymentsByRef, postRaw } from "./inbox-support.ts";

/**
 * JSON can spell text that PostgreSQL's JSON refuses: U+0000, or half a surrogate pair (`\ud83d`
 * alone, an emoji cut in two). A payer's name holding one must not stop their payment being credited.
 */

const shortcode = "174379";
let database: TestDatabase;
let h: Harness;
const clock = new FakeClock("2026-04-01T08:00:00Z");
let ctx: ReturnType<typeof billingContext>["ctx"];

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  h = await startHarness(ctx, { fake: { shortcode }, routes: { shortcode } });
});
afterAll(async () => {
  await h?.close();
  await database?.close();
});

/** A subscriber, the credits they had, and a receipt M-Pesa has not used yet. */
async function subscriberAndReceipt() {
  const plan = await createPlan(database.db, { priceCents: 100_000 });
  const { customer } = await activeSubscriber(ctx, plan.id);
  return { customer, before: await paymentCredits(database.db, customer.id), receipt: freshReceipt() };
}

describe("a paybill confirmation with text the database's JSON refuses", () => {
  it.each([
    ["half a surrogate pair", "\\ud83d"],
    ["U+0000", "\\u0000"],
  ])("holding %s in the payer's name is credited once", async (_what, badText) => {
    const { customer, before, receipt } = await subscriberAndReceipt();
    const body = JSON.stringify(
      c2bConfirmation({ transId: receipt, billRef: customer.accountNumber, amount: "700.00", shortcode }),
    ).replace('"FirstName":"JOHN"', `"FirstName":"JOHN${badText}"`);
    expect(body).toContain(badText);
    for (let i = 0; i < 2; i++) {
      const answer = await postRaw(c2bConfirmUrl(h), body);
      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.text)).toEqual({ ResultCode: 0, ResultDesc: "Success" });
    }
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 70_000]);
    expect(await paymentsByRef(database.db, receipt)).toMatchObject([
      { status: "applied", amountCents: 70_000 },
    ]);
  });
});

describe("a paybill confirmation with U+0000 inside a field that carries money or a key", () => {
  it("an amount spelled 7\\u000000.00 is not credited as 700 shillings", async () => {
    const { customer, before, receipt } = await subscriberAndReceipt();
    const body = JSON.stringify(
      c2bConfirmation({ transId: receipt, billRef: customer.accountNumber, amount: "700.00", shortcode }),
    ).replace('"TransAmount":"700.00"', '"TransAmount":"7\\u000000.00"');
    expect(body).toContain("\\u0000");
    const answer = await postRaw(c2bConfirmUrl(h), body);
    expect(answer.status).toBe(200);
    expect(await paymentCredits(database.db, customer.id)).toEqual(before);
    expect(await paymentsByRef(database.db, receipt)).toEqual([]);
  });

  it("a second amount field whose name holds U+0000 does not replace the real amount", async () => {
    const { customer, before, receipt } = await subscriberAndReceipt();
    const body = JSON.stringify(
      c2bConfirmation({ transId: receipt, billRef: customer.accountNumber, amount: "10.00", shortcode }),
    ).replace('"TransAmount":"10.00"', '"TransAmount":"10.00","TransAmount\\u0000":"7000.00"');
    const answer = await postRaw(c2bConfirmUrl(h), body);
    expect(answer.status).toBe(200);
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 1_000]);
  });
});
