import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { activeSubscriber } from "../support/billing.ts";
import { paymentCredits } from "./harness.ts";
import {
  allPaymentCredits,
  c2bConfirmation,
  c2bConfirmUrl,
  c2bValidateUrl,
  freshReceipt,
  inboxRowsAfter,
  lastInboxId,
  paymentsByRef,
  postRaw,
} from "./inbox-support.ts";
import { c2bSuccess, type InboxWorld, json, startInboxWorld } from "./inbox-world.ts";

/**
 * The M-Pesa inbox over real HTTP: paybill confirmations and validations that must not be credited
 * as they are are stored and answered, and held or refused instead.
 */

let world: InboxWorld;
let database: InboxWorld["database"];
let ctx: InboxWorld["ctx"];
let h: InboxWorld["h"];
let plan: InboxWorld["plan"];
let postAndRead: InboxWorld["postAndRead"];
beforeAll(async () => {
  world = await startInboxWorld();
  ({ database, ctx, h, plan, postAndRead } = world);
});
afterAll(async () => {
  await world?.close();
});

describe("paybill confirmations that must not be credited as they are", () => {
  it.each([["999999999999"], ["100000000.01"]])(
    "TransAmount %s: answered Success, flagged amount_out_of_range, not credited",
    async (amount) => {
      const { customer } = await activeSubscriber(ctx, plan.id);
      const before = await paymentCredits(database.db, customer.id);
      const mark = await lastInboxId(database.db);
      const sent = await h.fake.c2b({ billRef: customer.accountNumber, amountShillings: amount });
      expect(sent.confirmation).toEqual(c2bSuccess);
      const stored = await inboxRowsAfter(database.db, mark);
      expect(stored).toMatchObject([
        {
          kind: "c2b_confirmation",
          status: "processed",
          flag: "amount_out_of_range",
          reference: sent.transId,
        },
      ]);
      expect(stored[0]!.raw).toContain(`"TransAmount":"${amount}"`);
      expect(await paymentsByRef(database.db, sent.transId)).toEqual([]);
      expect(await paymentCredits(database.db, customer.id)).toEqual(before);
    },
  );

  it("KES 250,000 exactly is within M-Pesa's limit and is credited", async () => {
    const { customer } = await activeSubscriber(ctx, plan.id);
    const before = await paymentCredits(database.db, customer.id);
    const sent = await h.fake.c2b({ billRef: customer.accountNumber, amountShillings: "250000.00" });
    expect(sent.confirmation).toEqual(c2bSuccess);
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 250_000_00]);
  });

  it("more than a phone may pay (a business or bank payment): held in the unmatched queue for an admin", async () => {
    const { customer } = await activeSubscriber(ctx, plan.id);
    const before = await paymentCredits(database.db, customer.id);
    const sent = await h.fake.c2b({ billRef: customer.accountNumber, amountShillings: "400000.00" });
    expect(sent.confirmation).toEqual(c2bSuccess);
    const [held] = await paymentsByRef(database.db, sent.transId);
    expect(held).toMatchObject({
      status: "unmatched",
      amountCents: 400_000_00,
      accountReference: customer.accountNumber,
    });
    expect(held!.holdReason).toMatch(/more than a phone may pay at once \(KES 250000\)/);
    expect(await paymentCredits(database.db, customer.id)).toEqual(before);
  });

  it("another business's short code: held in the unmatched queue with a reason naming it, not credited", async () => {
    const { customer } = await activeSubscriber(ctx, plan.id);
    const before = await paymentCredits(database.db, customer.id);
    const transId = freshReceipt();
    const text = JSON.stringify(
      c2bConfirmation({ transId, billRef: customer.accountNumber, amount: "1500.00", shortcode: "600999" }),
    );
    for (let delivery = 0; delivery < 2; delivery++) {
      const answer = await postRaw(c2bConfirmUrl(h), text);
      expect(answer.status).toBe(200);
      expect(json(answer.text)).toEqual(c2bSuccess);
    }
    const held = await paymentsByRef(database.db, transId);
    expect(held).toHaveLength(1);
    expect(held[0]).toMatchObject({
      status: "unmatched",
      customerId: null,
      amountCents: 150_000,
      method: "mpesa_c2b",
      accountReference: customer.accountNumber,
    });
    expect(held[0]!.holdReason).toMatch(/600999/);
    expect(await paymentCredits(database.db, customer.id)).toEqual(before);
    const rows = (await inboxRowsAfter(database.db, 0)).filter((r) => r.reference === transId);
    expect(rows.map((r) => r.flag)).toEqual(["held", "duplicate"]);

    // The same payment to our short code would have been credited: the short code alone held it.
    const ours = await h.fake.c2b({ billRef: customer.accountNumber, amountShillings: 1500 });
    expect(ours.confirmation).toEqual(c2bSuccess);
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 150_000]);
  });

  it.each([
    ["not JSON", "TransID=X&TransAmount=10"],
    ["an empty body", ""],
    ["a confirmation without TransID", '{"TransAmount":"10.00","BillRefNumber":"TD00001"}'],
    ["a zero amount", '{"TransID":"QZERO00001","TransAmount":"0.00","BillRefNumber":"TD00001"}'],
    ["a negative amount", '{"TransID":"QNEG000001","TransAmount":"-10.00","BillRefNumber":"TD00001"}'],
  ])("%s: 200, stored as received, flagged, nothing credited", async (_name, text) => {
    const credits = await allPaymentCredits(database.db);
    const { answer, stored } = await postAndRead(c2bConfirmUrl(h), text);
    expect(answer.status).toBe(200);
    expect(json(answer.text)).toEqual(c2bSuccess);
    expect(stored).toMatchObject([
      { kind: "c2b_confirmation", raw: text, status: "processed", flag: "malformed" },
    ]);
    expect(await allPaymentCredits(database.db)).toBe(credits);
  });

  it("a validation request that is not JSON is rejected, and stored with its text", async () => {
    const text = "not json at all";
    const { answer, stored } = await postAndRead(c2bValidateUrl(h), text);
    expect(answer.status).toBe(200);
    expect(json(answer.text)).toEqual({ ResultCode: "C2B00013", ResultDesc: "Rejected" });
    expect(stored).toMatchObject([{ kind: "c2b_validation", status: "processed", flag: "rejected_amount" }]);
    expect(stored[0]!.raw).toBe(text);
  });
});
