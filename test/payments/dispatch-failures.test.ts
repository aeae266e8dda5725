import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { FakeClock, MINUTE } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import type { StkGateway } from "../../src/payments/mpesa/daraja.ts";
import { toMsisdn } from "../../src/payments/mpesa/wire.ts";
import { activeSubscriber, billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import {
  ask,
  capturingLogger,
  clientFor,
  dispatcherFor,
  driveUntil,
  eventually,
  failingAfterAccept,
  failureSms,
  refuseCheckoutStores,
  unsentIntents,
} from "./dispatch-support.ts";
import { freshPhone, type Harness, intent, startHarness } from "./harness.ts";

/**
 * How the push dispatcher meets Daraja's failures, with the real client over HTTP against the fake:
 * a payer is told a payment failed only when no prompt can have reached their phone.
 */

let database: Database;
let h: Harness;
const clock = new FakeClock("2026-04-01T08:00:00Z");
let ctx: ReturnType<typeof billingContext>["ctx"];
let voucherPlan: { id: number; priceCents: number };

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  h = await startHarness(ctx);
  voucherPlan = await createPlan(database.db, { priceCents: 5_000, kind: "hotspot", periodUnit: "days" });
});
afterEach(async () => {
  // A push left waiting would be sent by the next test's dispatcher and upset its counts.
  expect(await unsentIntents(database.db)).toEqual([]);
});
afterAll(async () => {
  await h?.close();
  await database.close();
});

/** A walk-in buying a voucher: no customer, so the push shows `TDW<intent id>`. */
const buyVoucher = (phone: string) =>
  ask(ctx, { phone, purpose: "voucher", planId: voucherPlan.id, amountCents: voucherPlan.priceCents });
const pushesTo = (phone: string) => h.fake.pushes.filter((p) => p.msisdn === toMsisdn(phone));
const refusalsTo = (phone: string) => h.fake.refusals.filter((r) => r.msisdn === toMsisdn(phone));
/** The prompt stays on the phone longer than any test runs; no callback is posted. */
const openPrompt = { outcome: "success", delayMs: 10 * MINUTE, lost: true } as const;

describe("wrong credentials", () => {
  it("fail the payment once with a truthful SMS, log one error for the operator and pause pushes", async () => {
    const passkey = "wr0ng-pa55key-7731";
    const { logger, text, lines } = capturingLogger();
    let gateway: StkGateway = clientFor(h, { passkey });
    const d = dispatcherFor(h, ctx, {
      logger,
      configPauseMs: 60_000,
      gateway: { stkPush: (r) => gateway.stkPush(r), stkQuery: (id) => gateway.stkQuery(id) },
    });
    const phone = freshPhone();
    const first = await buyVoucher(phone);
    const requests = h.fake.pushRequests;
    await d.runOnce();

    expect(await intent(database.db, first)).toMatchObject({
      status: "failed",
      pushUncertain: false,
      checkoutRequestId: null,
    });
    expect(refusalsTo(phone)).toEqual([
      { msisdn: toMsisdn(phone), errorCode: "500.001.1001", errorMessage: "Wrong credentials" },
    ]);
    expect(await failureSms(database.db, phone)).toHaveLength(1);
    const errors = lines.filter((l) => l.level >= 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.msg).toMatch(/Wrong credentials.*MPESA_PASSKEY.*paused for 60 s/);
    expect(text()).not.toContain(passkey);
    expect(text()).not.toContain(
      Buffer.from(h.fake.shortcode + passkey)
        .toString("base64")
        .slice(0, 16),
    );

    // Three more payers ask during the pause: Daraja hears nothing of them yet.
    const phones = [freshPhone(), freshPhone(), freshPhone()];
    const queued = [];
    for (const p of phones) queued.push(await buyVoucher(p));
    expect(await d.runOnce()).toBe(0);
    expect(h.fake.pushRequests).toBe(requests + 1);

    // The operator fixes the passkey; after the pause one push probes, then the rest follow.
    gateway = h.client;
    for (const p of phones) h.fake.scriptPhone(toMsisdn(p), openPrompt);
    clock.advance(61_000);
    expect(await d.runOnce()).toBe(1);
    expect(h.fake.pushRequests).toBe(requests + 2);
    expect(await d.runOnce()).toBe(2);
    for (const id of queued) expect((await intent(database.db, id)).checkoutRequestId).toMatch(/^ws_CO_/);
    // The refused payment is not tried again.
    expect(await intent(database.db, first)).toMatchObject({ status: "failed", sendAttempts: 1 });
    expect(refusalsTo(phone)).toHaveLength(1);
    expect(lines.filter((l) => l.level >= 50)).toHaveLength(1);
  });

  it("still wrong after the pause: one probe fails, the others wait for the next pause", async () => {
    const d = dispatcherFor(h, ctx, {
      gateway: clientFor(h, { passkey: "still-wrong" }),
      configPauseMs: 30_000,
    });
    const phones = [freshPhone(), freshPhone(), freshPhone()];
    const ids = [];
    for (const p of phones) ids.push(await buyVoucher(p));
    await d.runOnce();
    // The first round sends the whole batch at once (nothing was known to be wrong yet).
    for (const id of ids) expect((await intent(database.db, id)).status).toBe("failed");

    const later = [freshPhone(), freshPhone()];
    const waiting = [];
    for (const p of later) waiting.push(await buyVoucher(p));
    const requests = h.fake.pushRequests;
    clock.advance(31_000);
    expect(await d.runOnce()).toBe(1);
    expect(await d.runOnce()).toBe(0);
    expect(h.fake.pushRequests).toBe(requests + 1);
    const statuses = await Promise.all(waiting.map(async (id) => (await intent(database.db, id)).status));
    expect(statuses.sort()).toEqual(["failed", "pending"]);
    // Nobody is left waiting for a prompt that cannot come: past its age the last one fails too.
    clock.advance(3 * MINUTE);
    await d.runOnce();
    for (const [i, p] of later.entries()) {
      expect((await intent(database.db, waiting[i]!)).status).toBe("failed");
      expect(await failureSms(database.db, p)).toHaveLength(1);
    }
  });
});

describe("a busy subscriber (another prompt is open on the phone)", () => {
  it("is retried with back-off and sent once the open prompt closes", async () => {
    const plan = await createPlan(database.db, { priceCents: 50_000 });
    const { customer } = await activeSubscriber(ctx, plan.id);
    // Another merchant's prompt is on the payer's phone for a moment.
    h.fake.queue({ outcome: "cancelled", delayMs: 300, lost: true });
    await h.client.stkPush({
      msisdn: toMsisdn(customer.phone),
      amountShillings: 10,
      accountReference: "SHOP42",
      description: "Groceries",
      callbackUrl: h.stkUrl,
    });
    const id = await ask(ctx, { phone: customer.phone, customerId: customer.id, amountCents: 50_000 });
    h.fake.queue({ outcome: "success", lost: true });
    await h.dispatcher.runOnce();
    expect(await intent(database.db, id)).toMatchObject({
      status: "pending",
      checkoutRequestId: null,
      pushUncertain: false,
      lastError: expect.stringMatching(/Unable to lock subscriber/),
    });

    await driveUntil(h.dispatcher, clock, async () => !!(await intent(database.db, id)).checkoutRequestId);
    const sent = await intent(database.db, id);
    expect(sent).toMatchObject({ status: "pending", pushUncertain: false });
    expect(pushesTo(customer.phone).map((p) => p.accountReference)).toEqual([
      "SHOP42",
      customer.accountNumber,
    ]);
    expect(refusalsTo(customer.phone).length).toBeGreaterThan(0);
    expect(await failureSms(database.db, customer.phone)).toEqual([]);
  });

  it("that stays busy until the prompt would be too late fails the payment with an SMS", async () => {
    const phone = freshPhone();
    h.fake.queue(openPrompt);
    await h.client.stkPush({
      msisdn: toMsisdn(phone),
      amountShillings: 10,
      accountReference: "SHOP42",
      description: "Groceries",
      callbackUrl: h.stkUrl,
    });
    const id = await buyVoucher(phone);
    await h.dispatcher.runOnce();
    clock.advance(3 * MINUTE);
    await h.dispatcher.runOnce();
    // Every push of ours was refused: the payer can be told, truthfully.
    expect(await intent(database.db, id)).toMatchObject({ status: "failed", pushUncertain: false });
    expect(pushesTo(phone)).toHaveLength(1);
    expect(await failureSms(database.db, phone)).toHaveLength(1);
  });
});

describe("a push whose answer is lost", () => {
  it.each(["reset", "unavailable", "hang"] as const)(
    "(%s) is never reported failed: the intent is uncertain and times out silently",
    async (answer) => {
      const d = dispatcherFor(h, ctx, { gateway: clientFor(h, { timeoutMs: 300 }) });
      const phone = freshPhone();
      h.fake.queue({ ...openPrompt, answer });
      const id = await buyVoucher(phone);
      await d.runOnce();
      // The payer has the prompt, though we never heard so.
      expect(pushesTo(phone)).toHaveLength(1);
      expect(await intent(database.db, id)).toMatchObject({
        status: "pending",
        checkoutRequestId: null,
        pushUncertain: true,
      });

      // The retry finds the phone busy, most likely with our own prompt: still uncertain.
      clock.advance(1000);
      await d.runOnce();
      expect(await intent(database.db, id)).toMatchObject({
        status: "pending",
        pushUncertain: true,
        lastError: expect.stringMatching(/Unable to lock subscriber/),
      });

      clock.advance(3 * MINUTE);
      await d.runOnce();
      expect(await intent(database.db, id)).toMatchObject({ status: "timed_out", pushUncertain: true });
      expect(await failureSms(database.db, phone)).toEqual([]);
      expect(pushesTo(phone)).toHaveLength(1);
    },
  );

  it("may be prompted again once the first prompt closes, with the same account reference", async () => {
    const phone = freshPhone();
    h.fake.queue({ outcome: "cancelled", delayMs: 100, lost: true, answer: "reset" });
    h.fake.queue({ outcome: "success", lost: true });
    const id = await buyVoucher(phone);
    await h.dispatcher.runOnce();
    expect((await intent(database.db, id)).pushUncertain).toBe(true);
    await driveUntil(h.dispatcher, clock, async () => !!(await intent(database.db, id)).checkoutRequestId);
    const sent = await intent(database.db, id);
    expect(sent).toMatchObject({ status: "pending", pushUncertain: true, accountReference: `TDW${id}` });
    expect(pushesTo(phone).map((p) => p.accountReference)).toEqual([`TDW${id}`, `TDW${id}`]);
    expect(pushesTo(phone)[1]!.checkoutRequestId).toBe(sent.checkoutRequestId);
  });

  it("lost every time until the tries are used up still sends no failure SMS", async () => {
    const phone = freshPhone();
    // Each prompt closes at once, so every try reaches M-Pesa and every answer is lost.
    for (let i = 0; i < 4; i++)
      h.fake.queue({ outcome: "cancelled", delayMs: 0, lost: true, answer: "reset" });
    const id = await buyVoucher(phone);
    await driveUntil(h.dispatcher, clock, async () => (await intent(database.db, id)).status !== "pending");
    expect(await intent(database.db, id)).toMatchObject({
      status: "timed_out",
      pushUncertain: true,
      sendAttempts: 4,
    });
    expect(pushesTo(phone)).toHaveLength(4);
    expect(await failureSms(database.db, phone)).toEqual([]);
  });
});

describe("a failure after Daraja accepted the push", () => {
  it("storing the checkout id is retried through a database blip; the push is not sent again", async () => {
    const d = dispatcherFor(h, ctx, { storeRetryMs: 1 });
    const phone = freshPhone();
    h.fake.queue(openPrompt);
    const id = await buyVoucher(phone);
    const restore = await refuseCheckoutStores(database.db, 2);
    let writes = 0;
    try {
      await d.runOnce();
    } finally {
      writes = await restore();
    }
    expect(writes).toBe(3);
    const sent = await intent(database.db, id);
    expect(sent).toMatchObject({ status: "pending", pushUncertain: false });
    expect(sent.checkoutRequestId).toBe(pushesTo(phone)[0]!.checkoutRequestId);
    expect(pushesTo(phone)).toHaveLength(1);
  });

  it("storing the checkout id keeps failing: the intent times out as uncertain, the payer is not told", async () => {
    const d = dispatcherFor(h, ctx, { storeRetryMs: 1 });
    const phone = freshPhone();
    h.fake.queue(openPrompt);
    const id = await buyVoucher(phone);
    const restore = await refuseCheckoutStores(database.db, 1000);
    let writes = 0;
    try {
      await d.runOnce();
    } finally {
      writes = await restore();
    }
    expect(writes).toBe(5);
    expect(await intent(database.db, id)).toMatchObject({
      status: "timed_out",
      pushUncertain: true,
      checkoutRequestId: null,
    });
    expect(pushesTo(phone)).toHaveLength(1);
    expect(await failureSms(database.db, phone)).toEqual([]);
  });

  it("the gateway fails after the push went out: the intent is uncertain and never reported failed", async () => {
    const d = dispatcherFor(h, ctx, { gateway: failingAfterAccept(h.client) });
    const phone = freshPhone();
    h.fake.queue(openPrompt);
    const id = await buyVoucher(phone);
    await d.runOnce();
    expect(pushesTo(phone)).toHaveLength(1);
    expect(await intent(database.db, id)).toMatchObject({ status: "pending", pushUncertain: true });
    clock.advance(3 * MINUTE);
    await d.runOnce();
    expect(await intent(database.db, id)).toMatchObject({ status: "timed_out", pushUncertain: true });
    expect(await failureSms(database.db, phone)).toEqual([]);
  });

  it("the process dies: the next claim finds an attempt without a record and does not report failure", async () => {
    let die = () => {};
    const dies = new Promise<void>((resolve) => {
      die = resolve;
    });
    const doomed = dispatcherFor(h, ctx, { gateway: failingAfterAccept(h.client, dies) });
    const phone = freshPhone();
    h.fake.queue(openPrompt);
    const id = await buyVoucher(phone);
    const hung = doomed.runOnce();
    await eventually(() => pushesTo(phone)[0]);

    // Another instance picks the intent up once its lease has run out.
    clock.advance(121_000);
    await h.dispatcher.runOnce();
    expect(await intent(database.db, id)).toMatchObject({
      status: "timed_out",
      pushUncertain: true,
      sendAttempts: 2,
    });
    expect(await failureSms(database.db, phone)).toEqual([]);
    expect(pushesTo(phone)).toHaveLength(1);

    // The dead attempt's late error changes nothing.
    die();
    await hung;
    expect(await intent(database.db, id)).toMatchObject({ status: "timed_out" });
    expect(await failureSms(database.db, phone)).toEqual([]);
  });
});

describe("the account reference on the payer's phone", () => {
  it("is TDW<intent id> for a walk-in and the account number for a customer, stored on the intent", async () => {
    const walkIn = freshPhone();
    h.fake.scriptPhone(toMsisdn(walkIn), openPrompt);
    const voucher = await buyVoucher(walkIn);
    const plan = await createPlan(database.db, { priceCents: 20_000 });
    const { customer } = await activeSubscriber(ctx, plan.id);
    h.fake.scriptPhone(toMsisdn(customer.phone), openPrompt);
    const balance = await ask(ctx, { phone: customer.phone, customerId: customer.id, amountCents: 20_000 });
    await h.dispatcher.runOnce();

    expect((await intent(database.db, voucher)).accountReference).toBe(`TDW${voucher}`);
    expect(pushesTo(walkIn).map((p) => p.accountReference)).toEqual([`TDW${voucher}`]);
    expect((await intent(database.db, balance)).accountReference).toBe(customer.accountNumber);
    expect(pushesTo(customer.phone).map((p) => p.accountReference)).toEqual([customer.accountNumber]);
  });
});
