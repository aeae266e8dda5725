import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { maxCallbackBytes } from "../../src/payments/routes.ts";
import { intent, paymentCredits } from "./harness.ts";
import { allPaymentCredits, c2bConfirmUrl, paymentsByRef } from "./inbox-support.ts";
import { c2bSuccess, type InboxWorld, json, startInboxWorld, stkAccepted } from "./inbox-world.ts";

/**
 * The M-Pesa inbox over real HTTP, sent malformed bodies, bodies nested deep, and bodies PostgreSQL
 * cannot store as they are: each is answered 2xx once stored, with its text, and nothing malformed
 * is credited.
 */

let world: InboxWorld;
let database: InboxWorld["database"];
let h: InboxWorld["h"];
let pendingPush: InboxWorld["pendingPush"];
let postAndRead: InboxWorld["postAndRead"];
beforeAll(async () => {
  world = await startInboxWorld();
  ({ database, h, pendingPush, postAndRead } = world);
});
afterAll(async () => {
  await world?.close();
});

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

  it("a paid callback with a \\u0000 escape (no jsonb can hold it) is stored and credited once, the character replaced", async () => {
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
