import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import type { BillingContext } from "../../src/billing/context.ts";
import { FakeClock, MINUTE } from "../../src/clock.ts";
import { createMenuServices } from "../../src/menu/services.ts";
import type { MenuSettings } from "../../src/menu/types.ts";
import {
  maxInboxAttempts,
  retryInbox,
  slowRetryEveryMs,
  slowRetryForMs,
} from "../../src/payments/mpesa/inbox-retry.ts";
import { processStoredRequest } from "../../src/payments/mpesa/process.ts";
import { maxCallbackBytes } from "../../src/payments/routes.ts";
import { createUssdRoutes, maxUssdBytes } from "../../src/ussd/routes.ts";
import { activeSubscriber, billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { type Harness, intent, pay, paymentCredits, silent, startHarness, token } from "./harness.ts";
import {
  allPaymentCredits,
  breakPaymentInserts,
  type Chunked,
  c2bConfirmation,
  c2bConfirmUrl,
  c2bValidateUrl,
  chunked,
  freshReceipt,
  inboxRowsAfter,
  lastInboxId,
  paymentsByRef,
  postRaw,
  serveApp,
} from "./inbox-support.ts";

/**
 * The M-Pesa inbox over real HTTP: every authentic request is answered 2xx once stored (or 4xx when
 * it is not Daraja's at all), nothing malformed is credited, and nothing stored is lost when
 * processing or the database fails.
 */

const shortcode = "174379";
const stkAccepted = { ResultCode: 0, ResultDesc: "Accepted" };
const c2bSuccess = { ResultCode: 0, ResultDesc: "Success" };
const menuSettings: MenuSettings = {
  isp: "Kibera Net",
  support: "0700 123 456",
  timezone: "Africa/Nairobi",
  minPayCents: 1_000,
  maxPayCents: 150_000_00,
};

let database: TestDatabase;
let h: Harness;
let ussd: { baseUrl: string; close(): Promise<void> };
const clock = new FakeClock("2026-04-01T08:00:00Z");
let ctx: BillingContext;
let plan: { id: number };

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  h = await startHarness(ctx, { fake: { shortcode }, routes: { shortcode } });
  await h.client.registerC2bUrls({ confirmationUrl: c2bConfirmUrl(h), validationUrl: c2bValidateUrl(h) });
  plan = await createPlan(database.db, { priceCents: 100_000 });
  ussd = await serveApp(
    createApp({
      db: database.db,
      logger: silent,
      ussdRoutes: createUssdRoutes({
        db: database.db,
        services: createMenuServices(ctx, { planCacheMs: 0 }),
        settings: menuSettings,
        logger: silent,
      }),
    }),
  );
});
afterAll(async () => {
  await ussd?.close();
  await h?.close();
  await database?.close();
});

/** A subscriber's push M-Pesa accepted, whose callback has not come: the intent is pending. */
async function pendingPush(amountCents = 50_000) {
  const { customer } = await activeSubscriber(ctx, plan.id);
  const sent = await pay(
    h,
    ctx,
    { customerId: customer.id, phone: customer.phone, amountCents },
    { outcome: "success", lost: true, delayMs: 0 },
  );
  expect(sent).toMatchObject({ status: "pending", checkoutRequestId: expect.stringMatching(/^ws_CO_/) });
  const push = h.fake.pushes.find((p) => p.checkoutRequestId === sent.checkoutRequestId)!;
  return { customer, sent, push, before: await paymentCredits(database.db, customer.id) };
}

/** Posts `text` and returns the answer with the inbox rows it left. */
async function postAndRead(url: string, text: string | Chunked) {
  const mark = await lastInboxId(database.db);
  const answer = await postRaw(url, text);
  return { answer, stored: await inboxRowsAfter(database.db, mark) };
}

const json = (text: string): unknown => JSON.parse(text);

describe("malformed STK callbacks are stored with their text and flagged, never credited", () => {
  it.each([['"abc"'], ["1.5"], ["1e10"], ['""'], ['" "']])(
    "ResultCode %s on an otherwise genuine success",
    async (resultCode) => {
      const { customer, sent, push, before } = await pendingPush();
      const genuine = JSON.stringify(push.body);
      expect(genuine).toContain('"ResultCode":0,');
      const text = genuine.replace('"ResultCode":0,', `"ResultCode":${resultCode},`);

      const { answer, stored } = await postAndRead(h.stkUrl, text);

      expect(answer.status).toBe(200);
      expect(json(answer.text)).toEqual(stkAccepted);
      expect(stored).toHaveLength(1);
      expect(stored[0]).toMatchObject({
        kind: "stk",
        raw: text,
        status: "processed",
        flag: "malformed",
        error: null,
      });
      // Not a success, not a failure either: nothing is credited and the intent waits as it was.
      expect(await paymentsByRef(database.db, push.receipt!)).toEqual([]);
      expect(await paymentCredits(database.db, customer.id)).toEqual(before);
      expect(await intent(database.db, sent.id)).toMatchObject({
        status: "pending",
        paymentId: null,
        mpesaReceipt: null,
      });

      // The flagged copy took nothing: the genuine callback still settles the push, once.
      await h.fake.postCallback(h.stkUrl, push.body);
      expect(await intent(database.db, sent.id)).toMatchObject({
        status: "succeeded",
        mpesaReceipt: push.receipt,
      });
      expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 50_000]);
    },
  );

  it("a blank ResultCode on a callback without metadata is not a failure either", async () => {
    const { sent, push } = await pendingPush();
    for (const resultCode of ['""', '" "']) {
      const text = JSON.stringify({
        Body: {
          stkCallback: {
            MerchantRequestID: push.merchantRequestId,
            CheckoutRequestID: push.checkoutRequestId,
            ResultCode: "__CODE__",
            ResultDesc: "Request cancelled by user",
          },
        },
      }).replace('"__CODE__"', resultCode);
      const { answer, stored } = await postAndRead(h.stkUrl, text);
      expect(answer.status).toBe(200);
      expect(stored).toMatchObject([{ raw: text, status: "processed", flag: "malformed" }]);
    }
    expect(await intent(database.db, sent.id)).toMatchObject({ status: "pending", resultCode: null });
  });

  it.each([
    ["not JSON at all", "ResultCode=0&Receipt=ABC"],
    ["an empty body", ""],
    ["JSON null", "null"],
    ["a JSON string", '"Body"'],
    ["JSON of another shape", '{"Body":{"stkCallback":{"ResultCode":0}}}'],
    ["truncated JSON", '{"Body":{"stkCallback":{"CheckoutRequestID":"ws_CO_1","ResultCode":0'],
  ])("%s: 200, stored as received, flagged", async (_name, text) => {
    const credits = await allPaymentCredits(database.db);
    const { answer, stored } = await postAndRead(h.stkUrl, text);
    expect(answer.status).toBe(200);
    expect(json(answer.text)).toEqual(stkAccepted);
    expect(stored).toMatchObject([{ kind: "stk", raw: text, status: "processed", flag: "malformed" }]);
    expect(await allPaymentCredits(database.db)).toBe(credits);
  });

  it("a paid callback whose amount is out of M-Pesa's range is flagged and credits nothing", async () => {
    const { customer, sent, push, before } = await pendingPush();
    for (const amount of ["999999999999", "250000.01", "0", "-500"]) {
      const text = JSON.stringify(push.body).replace(
        '{"Name":"Amount","Value":500}',
        `{"Name":"Amount","Value":${amount}}`,
      );
      expect(text).toContain(`"Value":${amount}}`);
      const { answer, stored } = await postAndRead(h.stkUrl, text);
      expect(answer.status).toBe(200);
      expect(stored).toMatchObject([{ raw: text, status: "processed", flag: "malformed" }]);
    }
    expect(await paymentCredits(database.db, customer.id)).toEqual(before);
    expect(await intent(database.db, sent.id)).toMatchObject({ status: "pending", paymentId: null });
  });
});

describe("deeply nested bodies", () => {
  const cases = [
    ["60,000 unclosed [", "[".repeat(60_000)],
    ["30,000 levels of arrays, closed (valid JSON)", `${"[".repeat(30_000)}${"]".repeat(30_000)}`],
    ["10,000 levels of objects", `${'{"a":'.repeat(10_000)}1${"}".repeat(10_000)}`],
    ["17 levels (one past the bound)", `${"[".repeat(17)}${"]".repeat(17)}`],
  ] as const;

  it.each(cases)("%s, as an STK callback: 200, stored and flagged malformed_too_deep", async (_n, text) => {
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(maxCallbackBytes);
    const credits = await allPaymentCredits(database.db);
    const { answer, stored } = await postAndRead(h.stkUrl, text);
    expect(answer.status).toBe(200);
    expect(json(answer.text)).toEqual(stkAccepted);
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({
      raw: text,
      status: "processed",
      flag: "malformed_too_deep",
      body: null,
    });
    expect(await allPaymentCredits(database.db)).toBe(credits);
  });

  it.each(cases)("%s, as a paybill confirmation: 200, stored and flagged", async (_n, text) => {
    const { answer, stored } = await postAndRead(c2bConfirmUrl(h), text);
    expect(answer.status).toBe(200);
    expect(json(answer.text)).toEqual(c2bSuccess);
    expect(stored).toMatchObject([
      { kind: "c2b_confirmation", raw: text, status: "processed", flag: "malformed_too_deep" },
    ]);
  });

  it("16 levels is within the bound: parsed (and flagged for its shape, not its depth)", async () => {
    const text = `${"[".repeat(16)}${"]".repeat(16)}`;
    const { answer, stored } = await postAndRead(h.stkUrl, text);
    expect(answer.status).toBe(200);
    expect(stored).toMatchObject([{ raw: text, status: "processed", flag: "malformed" }]);
  });

  it("a genuine paid callback nested past the bound is kept for an admin, not credited", async () => {
    const { customer, sent, push, before } = await pendingPush();
    const deep = `{"Junk":${"[".repeat(16)}${"]".repeat(16)},${JSON.stringify(push.body).slice(1)}`;
    const { answer, stored } = await postAndRead(h.stkUrl, deep);
    expect(answer.status).toBe(200);
    expect(stored).toMatchObject([{ raw: deep, flag: "malformed_too_deep" }]);
    expect(await paymentCredits(database.db, customer.id)).toEqual(before);
    expect((await intent(database.db, sent.id)).status).toBe("pending");
  });

  it("100,000 levels of [ is over the size limit: 413 and nothing stored", async () => {
    const text = "[".repeat(100_000);
    const { answer, stored } = await postAndRead(h.stkUrl, text);
    expect(answer.status).toBe(413);
    expect(stored).toEqual([]);
  });
});

describe("size limits", () => {
  const padded = (bytes: number) => {
    const head = '{"Body":{"stkCallback":{"CheckoutRequestID":"ws_CO_big","ResultCode":0,"Pad":"';
    const tail = '"}}}';
    return head + "x".repeat(bytes - head.length - tail.length) + tail;
  };

  it.each([
    ["200 KB", 200 * 1024],
    ["5 MB", 5 * 1024 * 1024],
  ])("a %s STK callback gets 413 and nothing is stored", async (_name, bytes) => {
    const text = padded(bytes);
    expect(Buffer.byteLength(text)).toBe(bytes);
    const { answer, stored } = await postAndRead(h.stkUrl, text);
    expect(answer.status).toBe(413);
    expect(stored).toEqual([]);
  });

  it("a 200 KB body sent chunked, without a length, gets 413 too (STK and paybill)", async () => {
    for (const url of [h.stkUrl, c2bConfirmUrl(h)]) {
      const { answer, stored } = await postAndRead(url, chunked(padded(200 * 1024)));
      expect(answer.status).toBe(413);
      expect(stored).toEqual([]);
    }
  });

  it("the limit is 64 KiB exactly: one byte over is refused, at the limit is stored", async () => {
    const over = await postAndRead(h.stkUrl, padded(maxCallbackBytes + 1));
    expect(over.answer.status).toBe(413);
    expect(over.stored).toEqual([]);
    const at = await postAndRead(h.stkUrl, padded(maxCallbackBytes));
    expect(at.answer.status).toBe(200);
    expect(at.stored).toMatchObject([{ status: "processed", flag: "malformed" }]);
    expect(at.stored[0]!.raw).toHaveLength(maxCallbackBytes);
  });

  it("a USSD post over 8 KiB gets 413 (with a length and chunked); a normal one is answered", async () => {
    const form = (text: string) =>
      new URLSearchParams({
        sessionId: "ATUid_big",
        serviceCode: "*384*4242#",
        phoneNumber: "+254712000111",
        text,
      }).toString();
    const big = form("1*".repeat(maxUssdBytes / 2));
    expect(Buffer.byteLength(big)).toBeGreaterThan(maxUssdBytes);
    const type = "application/x-www-form-urlencoded";
    expect((await postRaw(`${ussd.baseUrl}/ussd`, big, type)).status).toBe(413);
    expect((await postRaw(`${ussd.baseUrl}/ussd`, chunked(big, 1024), type)).status).toBe(413);
    const normal = await postRaw(`${ussd.baseUrl}/ussd`, form(""), type);
    expect(normal.status).toBe(200);
    expect(normal.text).toMatch(/^CON /);
  });
});

describe("paybill confirmations that must not be credited as they are", () => {
  it.each([["999999999999"], ["250000.01"]])(
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

describe("bodies PostgreSQL cannot store as they are", () => {
  it("a callback with a NUL byte in its text: 200, stored visibly (U+FFFD) and flagged", async () => {
    const text = '{"Body":{"stkCallback":{"CheckoutRequestID":"ws_CO_nul\u0000","ResultCode":0}}}';
    expect(text).toContain("\u0000");
    const { answer, stored } = await postAndRead(h.stkUrl, text);
    expect(answer.status).toBe(200);
    expect(json(answer.text)).toEqual(stkAccepted);
    expect(stored).toMatchObject([
      { kind: "stk", raw: text.replace("\u0000", "\uFFFD"), status: "processed", flag: "malformed" },
    ]);
  });

  it("a paid callback with a \\u0000 escape (no jsonb can hold it) is stored and credited once, the character dropped", async () => {
    const { customer, sent, push, before } = await pendingPush();
    const text = JSON.stringify(push.body).replace(
      '"ResultDesc":"The service request is processed successfully."',
      '"ResultDesc":"The service request is processed successfully.\\u0000"',
    );
    expect(text).toContain("\\u0000");
    const { answer, stored } = await postAndRead(h.stkUrl, text);
    expect(answer.status).toBe(200);
    expect(stored).toMatchObject([{ raw: text, status: "processed", flag: null, error: null }]);
    expect((await intent(database.db, sent.id)).status).toBe("succeeded");
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, sent.amountCents]);
  });
});

describe("inbox durability", () => {
  it("a request whose processing fails stays failed with its error; retryInbox credits it once", async () => {
    const { customer, sent, push, before } = await pendingPush();
    const text = JSON.stringify(push.body);
    const broken = await breakPaymentInserts(database.db);
    let inboxId = 0;
    const row = async () => (await inboxRowsAfter(database.db, inboxId - 1))[0]!;
    try {
      const { answer, stored } = await postAndRead(h.stkUrl, text);
      expect(answer.status).toBe(200);
      expect(json(answer.text)).toEqual(stkAccepted);
      expect(stored).toHaveLength(1);
      inboxId = stored[0]!.id;
      expect(stored[0]).toMatchObject({ kind: "stk", raw: text, status: "failed", attempts: 1, flag: null });
      expect(stored[0]!.error).toEqual(expect.any(String));
      expect(await broken.tries()).toBeGreaterThanOrEqual(1);
      expect((await intent(database.db, sent.id)).status).toBe("pending");
      expect(await paymentCredits(database.db, customer.id)).toEqual(before);

      // Too young for the retry job (its own request may still be at it): left alone.
      await retryInbox(h.mpesa);
      expect(await row()).toMatchObject({ status: "failed", attempts: 1 });
      clock.advance(31_000);
      // Still broken: it fails again, the try is counted, the request is kept.
      expect((await retryInbox(h.mpesa)).failed).toBeGreaterThanOrEqual(1);
      expect(await row()).toMatchObject({ status: "failed", attempts: 2, raw: text });
      expect(await paymentCredits(database.db, customer.id)).toEqual(before);
    } finally {
      await broken.repair();
    }

    // The next run, once the previous run's hold on it has lapsed.
    clock.advance(31_000);
    expect((await retryInbox(h.mpesa)).processed).toBeGreaterThanOrEqual(1);
    expect(await row()).toMatchObject({ status: "processed", flag: null, error: null, attempts: 3 });
    expect(await intent(database.db, sent.id)).toMatchObject({
      status: "succeeded",
      mpesaReceipt: push.receipt,
    });
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 50_000]);

    // Nothing left to do for it, and Daraja's late duplicate changes nothing.
    clock.advance(31_000);
    await retryInbox(h.mpesa);
    expect(await row()).toMatchObject({ status: "processed", attempts: 3 });
    await h.fake.postCallback(h.stkUrl, push.body);
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 50_000]);
  });

  it("a request stored but never processed (the process died right after storing it) is processed by the retry", async () => {
    const { customer, sent, push, before } = await pendingPush();
    const text = JSON.stringify(push.body);
    // What the route does first; nothing after it ran.
    const id = await h.mpesa.inbox.store({ kind: "stk", text });
    expect(id).toEqual(expect.any(Number));
    const row = async () => (await inboxRowsAfter(database.db, id! - 1))[0]!;
    expect(await row()).toMatchObject({ id, status: "received", attempts: 0, raw: text });

    await retryInbox(h.mpesa);
    expect(await row()).toMatchObject({ status: "received", attempts: 0 });
    clock.advance(31_000);
    await retryInbox(h.mpesa);
    expect(await row()).toMatchObject({ status: "processed", attempts: 1, flag: null, error: null });
    expect(await intent(database.db, sent.id)).toMatchObject({
      status: "succeeded",
      mpesaReceipt: push.receipt,
    });
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 50_000]);
  });

  it("after its quick tries a request stays failed, with its text, and is tried once an hour until it goes through", async () => {
    const { customer, sent, push, before } = await pendingPush();
    const broken = await breakPaymentInserts(database.db);
    let inboxId = 0;
    const row = async () => (await inboxRowsAfter(database.db, inboxId - 1))[0]!;
    try {
      const { stored } = await postAndRead(h.stkUrl, JSON.stringify(push.body));
      inboxId = stored[0]!.id;
      for (let run = 0; run < maxInboxAttempts + 2; run++) {
        clock.advance(31_000);
        await retryInbox(h.mpesa);
      }
      expect(await row()).toMatchObject({ status: "failed", attempts: maxInboxAttempts });
      // Still failing an hour on: one more try.
      clock.advance(60 * MINUTE);
      await retryInbox(h.mpesa);
      expect(await row()).toMatchObject({ status: "failed", attempts: maxInboxAttempts + 1 });
    } finally {
      await broken.repair();
    }
    // The cause is fixed: within the half minutes that follow, nothing; at the next hour, credited.
    clock.advance(31_000);
    await retryInbox(h.mpesa);
    expect(await row()).toMatchObject({
      status: "failed",
      attempts: maxInboxAttempts + 1,
      raw: JSON.stringify(push.body),
    });
    expect((await row()).error).toEqual(expect.any(String));
    expect(await paymentCredits(database.db, customer.id)).toEqual(before);
    clock.advance(60 * MINUTE);
    await retryInbox(h.mpesa);
    expect(await row()).toMatchObject({ status: "processed" });
    expect((await intent(database.db, sent.id)).status).toBe("succeeded");
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 50_000]);
  });

  it("the error kept on a failed request says why it failed", async () => {
    const { push } = await pendingPush();
    const broken = await breakPaymentInserts(database.db);
    try {
      const { stored } = await postAndRead(h.stkUrl, JSON.stringify(push.body));
      expect(stored).toMatchObject([{ status: "failed" }]);
      // The database's reason, not only the statement that met it.
      expect(stored[0]!.error).toMatch(/refusing writes/);
    } finally {
      await broken.repair();
      clock.advance(31_000);
      await retryInbox(h.mpesa);
    }
  });

  it("a failed request claimed by one retry run is not taken again by a run that overlaps it", async () => {
    const { customer } = await activeSubscriber(ctx, plan.id);
    const before = await paymentCredits(database.db, customer.id);
    const mark = await lastInboxId(database.db);
    const broken = await breakPaymentInserts(database.db);
    let transId = "";
    try {
      const sent = await h.fake.c2b({ billRef: customer.accountNumber, amountShillings: 800 });
      transId = sent.transId;
      expect(sent.confirmation).toEqual(c2bSuccess);
      expect(await inboxRowsAfter(database.db, mark)).toMatchObject([
        { kind: "c2b_confirmation", status: "failed", attempts: 1 },
      ]);
      expect(await paymentsByRef(database.db, transId)).toEqual([]);
    } finally {
      await broken.repair();
    }
    clock.advance(31_000);
    // A retry run claims it (what retryInbox does first) and is still processing it when a second
    // run starts (another scheduler instance, or a run that outlasted the 30 s period).
    const tries = { quickTries: maxInboxAttempts, slowRetryEveryMs, slowRetryForMs };
    const claimedByFirst = (await h.mpesa.inbox.claimForRetry(30_000, tries)).filter(
      (r) => r.kind === "c2b_confirmation" && r.text.includes(transId),
    );
    expect(claimedByFirst).toHaveLength(1);
    await retryInbox(h.mpesa);
    await processStoredRequest(h.mpesa.process, claimedByFirst[0]!);

    // Processed once, by the run that claimed it: one try more, credited, not also "duplicate".
    expect(await inboxRowsAfter(database.db, mark)).toMatchObject([
      { status: "processed", flag: null, reference: transId, attempts: 2 },
    ]);
    expect(await paymentsByRef(database.db, transId)).toMatchObject([
      { status: "applied", customerId: customer.id },
    ]);
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 80_000]);
  });

  describe("with a spool directory", () => {
    let spoolDir: string;
    let dead: TestDatabase;
    /** The app's view of the database: away until the test brings it back. */
    let flaky: BillingContext;
    let s: Harness;

    beforeAll(async () => {
      spoolDir = await mkdtemp(join(tmpdir(), "tandao-spool-"));
      dead = await createTestDatabase();
      await dead.close();
      flaky = { ...ctx, db: dead.db };
      s = await startHarness(flaky, { fake: { shortcode }, routes: { spoolDir, shortcode } });
    });
    afterAll(async () => {
      await s?.close();
      if (spoolDir) await rm(spoolDir, { recursive: true, force: true });
    });
    const spooled = async () => (await readdir(spoolDir)).filter((n) => !n.startsWith("."));

    it("a request the database cannot take is answered 200, spooled, then imported and credited once", async () => {
      const { customer, sent, push, before } = await pendingPush();
      const payer = (await activeSubscriber(ctx, plan.id)).customer;
      const payerBefore = await paymentCredits(database.db, payer.id);
      const mark = await lastInboxId(database.db);
      flaky.db = dead.db;

      const stkText = JSON.stringify(push.body);
      const stk = await postRaw(s.stkUrl, stkText);
      expect(stk.status).toBe(200);
      expect(json(stk.text)).toEqual(stkAccepted);
      const transId = freshReceipt();
      const c2bText = JSON.stringify(
        c2bConfirmation({ transId, billRef: payer.accountNumber, amount: "700.00", shortcode }),
      );
      const c2b = await postRaw(c2bConfirmUrl(s), c2bText);
      expect(c2b.status).toBe(200);
      expect(json(c2b.text)).toEqual(c2bSuccess);

      expect(await spooled()).toHaveLength(2);
      expect(await inboxRowsAfter(database.db, mark)).toEqual([]);
      expect((await intent(database.db, sent.id)).status).toBe("pending");

      flaky.db = database.db; // the database is back
      expect(await retryInbox(s.mpesa)).toMatchObject({ imported: 2, failed: 0 });
      expect(await spooled()).toEqual([]);
      const stored = await inboxRowsAfter(database.db, mark);
      expect(stored.map((r) => [r.kind, r.raw, r.status, r.flag])).toEqual([
        ["stk", stkText, "processed", null],
        ["c2b_confirmation", c2bText, "processed", null],
      ]);
      expect(await intent(database.db, sent.id)).toMatchObject({
        status: "succeeded",
        mpesaReceipt: push.receipt,
      });
      expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 50_000]);
      expect(await paymentCredits(database.db, payer.id)).toEqual([...payerBefore, 70_000]);

      // A second run imports nothing, and credits nothing again.
      clock.advance(31_000);
      expect(await retryInbox(s.mpesa)).toMatchObject({ imported: 0 });
      expect(await inboxRowsAfter(database.db, mark)).toMatchObject([{ attempts: 0 }, { attempts: 0 }]);
      expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 50_000]);
      expect(await paymentCredits(database.db, payer.id)).toEqual([...payerBefore, 70_000]);
    });

    it("after an outage longer than the retry delay, each spooled request is processed once", async () => {
      const { customer, sent, push, before } = await pendingPush();
      const payer = (await activeSubscriber(ctx, plan.id)).customer;
      const payerBefore = await paymentCredits(database.db, payer.id);
      const mark = await lastInboxId(database.db);
      flaky.db = dead.db;
      const stkText = JSON.stringify(push.body);
      expect((await postRaw(s.stkUrl, stkText)).status).toBe(200);
      const transId = freshReceipt();
      const c2bText = JSON.stringify(
        c2bConfirmation({ transId, billRef: payer.accountNumber, amount: "600.00", shortcode }),
      );
      expect((await postRaw(c2bConfirmUrl(s), c2bText)).status).toBe(200);
      expect(await spooled()).toHaveLength(2);

      clock.advance(2 * 60_000); // the database stays away for two minutes
      flaky.db = database.db;
      await retryInbox(s.mpesa);

      expect(await spooled()).toEqual([]);
      expect(await intent(database.db, sent.id)).toMatchObject({
        status: "succeeded",
        mpesaReceipt: push.receipt,
      });
      expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 50_000]);
      expect(await paymentCredits(database.db, payer.id)).toEqual([...payerBefore, 60_000]);
      // One processing each: credited, not also recorded as a duplicate of itself.
      const stored = await inboxRowsAfter(database.db, mark);
      expect(stored.map((r) => [r.raw, r.status, r.flag])).toEqual([
        [stkText, "processed", null],
        [c2bText, "processed", null],
      ]);
    });

    it("a copy spooled while another copy of the same callback was stored is credited once", async () => {
      const { customer, sent, push, before } = await pendingPush();
      const text = JSON.stringify(push.body);
      const mark = await lastInboxId(database.db);
      flaky.db = dead.db;
      expect((await postRaw(s.stkUrl, text)).status).toBe(200);
      flaky.db = database.db;
      // Daraja's duplicate arrives once the database is back, and is processed at once.
      expect((await postRaw(s.stkUrl, text)).status).toBe(200);
      expect(await intent(database.db, sent.id)).toMatchObject({
        status: "succeeded",
        mpesaReceipt: push.receipt,
      });

      expect(await retryInbox(s.mpesa)).toMatchObject({ imported: 1, failed: 0 });
      expect(await spooled()).toEqual([]);
      const stored = await inboxRowsAfter(database.db, mark);
      expect(stored.map((r) => [r.raw, r.status, r.flag])).toEqual([
        [text, "processed", null],
        [text, "processed", "duplicate"],
      ]);
      expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 50_000]);
    });
  });
});

describe("wiring", () => {
  it("the harness's routes are the ones under test (token and path)", async () => {
    expect(h.stkUrl).toContain(`/hooks/mp/${token}/stk`);
    const wrong = await postRaw(h.stkUrl.replace(token, "nope"), "{}");
    expect(wrong.status).toBe(404);
  });
});
