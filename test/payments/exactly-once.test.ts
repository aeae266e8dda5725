import { and, eq, sql } from "drizzle-orm";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requestPayment } from "../../src/billing/intents/request.ts";
import { FakeClock, MINUTE } from "../../src/clock.ts";
import { ledgerEntries, paymentIntents, payments } from "../../src/db/schema/index.ts";
import type { StkGateway } from "../../src/payments/mpesa/daraja.ts";
import type { StkOutcome } from "../../src/payments/mpesa/fake.ts";
import { recoverPendingIntents } from "../../src/payments/mpesa/recovery.ts";
import { toMsisdn } from "../../src/payments/mpesa/wire.ts";
import { callbackPaths } from "../../src/payments/routes.ts";
import { activeSubscriber, admin, billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase, onRealPostgres, type TestDatabase } from "../support/db.ts";
import { type HeldLock, holdLock, sessionsWaitingForLocks, waitingForLocks } from "../support/locks.ts";
import { dispatcherFor, eventually, failureSms } from "./dispatch-support.ts";
import { freshPhone, type Harness, intent, paymentCredits, startHarness, token } from "./harness.ts";

let database: TestDatabase;
let h: Harness;
const clock = new FakeClock("2026-04-01T08:00:00Z");
let ctx: ReturnType<typeof billingContext>["ctx"];

beforeAll(async () => {
  database = await createTestDatabase({ maxConnections: 20 });
  ctx = billingContext(database.db, clock).ctx;
  h = await startHarness(ctx);
  await h.client.registerC2bUrls({
    confirmationUrl: `${h.baseUrl}${callbackPaths.c2bConfirmation(token)}`,
    validationUrl: `${h.baseUrl}${callbackPaths.c2bValidation(token)}`,
  });
});
afterAll(async () => {
  await h?.close();
  await database.close();
});

/** Sends a push whose callback the fake keeps to itself, so the test decides when it arrives. */
async function sentIntent(customerId: number, amountCents: number, outcome: StkOutcome) {
  h.fake.queue({ outcome, delayMs: 0, lost: true });
  const asked = await requestPayment(ctx, admin, {
    phone: freshPhone(),
    purpose: "balance",
    amountCents,
    customerId,
    channel: "test",
  });
  if (!asked.ok) throw new Error(asked.message);
  await h.dispatcher.runOnce();
  const row = await intent(database.db, asked.intentId);
  const push = h.fake.pushes.find((p) => p.checkoutRequestId === row.checkoutRequestId)!;
  return { row, push };
}

const post = (url: string, body: unknown) =>
  fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

describe.runIf(onRealPostgres())("exactly once under real concurrency", () => {
  it("50 concurrent deliveries of one callback and a paybill confirmation of its receipt credit once", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { customer } = await activeSubscriber(ctx, plan.id);
    const before = await paymentCredits(database.db, customer.id);
    const { row, push } = await sentIntent(customer.id, 40_000, "success");
    const c2b = {
      TransactionType: "Pay Bill",
      TransID: push.receipt,
      TransTime: "20260401110000",
      TransAmount: "400.00",
      BusinessShortCode: h.fake.shortcode,
      BillRefNumber: customer.accountNumber,
      MSISDN: "2547 ***** 126",
      FirstName: "JANE",
    };
    const responses = await Promise.all([
      ...Array.from({ length: 50 }, () => post(h.stkUrl, push.body)),
      post(`${h.baseUrl}${callbackPaths.c2bConfirmation(token)}`, c2b),
    ]);
    expect(responses.every((r) => r.status === 200)).toBe(true);
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 40_000]);
    expect((await intent(database.db, row.id)).status).toBe("succeeded");
  });
});

describe.runIf(onRealPostgres())("a callback that overtakes the storing of its checkout id", () => {
  it("is credited to the request it paid, not queued as a stranger's payment", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { customer } = await activeSubscriber(ctx, plan.id);
    const before = await paymentCredits(database.db, customer.id);
    const { intentId, push } = await callbackOvertakingItsCheckoutId(customer, "success");

    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 45_000]);
    expect(await intent(database.db, intentId)).toMatchObject({
      status: "succeeded",
      checkoutRequestId: push.checkoutRequestId,
      mpesaReceipt: push.receipt,
    });
    const recorded = await database.db
      .select({ status: payments.status })
      .from(payments)
      .where(eq(payments.providerRef, push.receipt!));
    expect(recorded).toEqual([{ status: "applied" }]);
  });

  it("a cancelled prompt fails its request at once, and the customer who asked is told", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { customer } = await activeSubscriber(ctx, plan.id);
    const { intentId } = await callbackOvertakingItsCheckoutId(customer, "cancelled");

    expect(await intent(database.db, intentId)).toMatchObject({ status: "cancelled", paymentId: null });
    expect(await failureSms(database.db, customer.phone)).toHaveLength(1);
  });
});

/**
 * Asks for KES 450 and sends the push while another session holds the intent's row from the moment
 * M-Pesa accepts it, so the dispatcher's storing of the checkout id waits (a slow connection, a busy
 * server). The callback is posted meanwhile and has started settling before that row is let go.
 */
async function callbackOvertakingItsCheckoutId(customer: { id: number; phone: string }, outcome: StkOutcome) {
  const { id: customerId, phone } = customer;
  const asked = await requestPayment(ctx, admin, {
    phone,
    purpose: "balance",
    amountCents: 45_000,
    customerId,
    channel: "test",
  });
  if (!asked.ok) throw new Error(asked.message);

  let holding: HeldLock | undefined;
  const holdingAfterAccept: StkGateway = {
    async stkPush(request) {
      const accepted = await h.client.stkPush(request);
      holding = await holdLock(
        database.url!,
        (tx) => tx`select id from payment_intents where id = ${asked.intentId} for update`,
      );
      return accepted;
    },
    stkQuery: (id) => h.client.stkQuery(id),
  };
  try {
    h.fake.queue({ outcome, delayMs: 0, lost: true });
    const dispatched = dispatcherFor(h, ctx, { gateway: holdingAfterAccept }).runOnce();
    await eventually(waitingForLocks(database.db, 1));
    const push = h.fake.pushes.find((p) => p.msisdn === toMsisdn(phone))!;
    let answered = false;
    const callback = post(h.stkUrl, push.body).finally(() => {
      answered = true;
    });
    // The callback waits for the held row too, unless it settles without looking for it.
    await eventually(async () =>
      answered || (await sessionsWaitingForLocks(database.db)) >= 2 ? true : undefined,
    );
    await holding?.release();
    expect((await callback).status).toBe(200);
    await dispatched;
    return { intentId: asked.intentId, push, phone };
  } finally {
    await holding?.release().catch(() => {});
  }
}

describe("exactly once over random interleavings", () => {
  it("the ledger equals the sum of the distinct successful payments, whatever arrives twice, late or never", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { customer } = await activeSubscriber(ctx, plan.id, "Property Payer");
    const concurrent = onRealPostgres();

    const pushPlan = fc.record({
      outcome: fc.constantFrom<StkOutcome>("success", "success", "cancelled", "wrong_pin", "unreachable"),
      amountShillings: fc.integer({ min: 1, max: 5000 }),
      copies: fc.integer({ min: 0, max: 3 }), // 0: the callback is lost
    });
    const scenario = fc.record({
      pushes: fc.array(pushPlan, { minLength: 1, maxLength: 4 }),
      // Where the recovery job runs among the deliveries (as a fraction of the way through), if at all.
      recoveryAt: fc.option(fc.double({ min: 0, max: 1, noNaN: true })),
      seed: fc.integer(),
    });

    await fc.assert(
      fc.asyncProperty(scenario, async ({ pushes, recoveryAt, seed }) => {
        clock.advance(10 * MINUTE);
        const before = (await paymentCredits(database.db, customer.id)).reduce((a, b) => a + b, 0);
        const sent = [];
        for (const p of pushes)
          sent.push({ ...p, ...(await sentIntent(customer.id, p.amountShillings * 100, p.outcome)) });

        // Every copy of every callback, in a shuffled order, in waves that run concurrently.
        const deliveries = sent.flatMap((s) => Array.from({ length: s.copies }, () => s.push.body));
        const order = shuffle(deliveries, seed);
        const waves: (() => Promise<unknown>)[][] = [];
        for (let i = 0; i < order.length; i += 3)
          waves.push(order.slice(i, i + 3).map((body) => () => post(h.stkUrl, body)));
        const recover = async () => {
          clock.advance(3 * MINUTE);
          await recoverPendingIntents({ ...h.recovery, pendingSeconds: 60 });
        };
        if (recoveryAt !== null) waves.splice(Math.floor(recoveryAt * waves.length), 0, [recover]);
        for (const wave of waves) {
          if (concurrent) await Promise.all(wave.map((run) => run()));
          else for (const run of wave) await run();
        }

        // A success is credited when its callback or the recovery job's query said so.
        const expected = sent
          .filter((s) => s.outcome === "success" && (s.copies > 0 || recoveryAt !== null))
          .reduce((sum, s) => sum + s.amountShillings * 100, 0);
        const after = (await paymentCredits(database.db, customer.id)).reduce((a, b) => a + b, 0);
        expect(after - before).toBe(expected);
        for (const s of sent) {
          const row = await intent(database.db, s.row.id);
          const settled = s.copies > 0 || recoveryAt !== null;
          if (!settled) expect(row.status).toBe("pending");
          else if (s.outcome === "success") expect(row.status).toBe("succeeded");
          else expect(row.paymentId).toBeNull();
        }
        // No payment row is credited twice.
        const [dupes] = await database.db
          .select({ n: sql<number>`count(*)::int` })
          .from(ledgerEntries)
          .where(and(eq(ledgerEntries.kind, "payment"), eq(ledgerEntries.customerId, customer.id)))
          .groupBy(ledgerEntries.paymentId)
          .having(sql`count(*) > 1`);
        expect(dupes).toBeUndefined();

        // Whatever was still lost is settled by a later recovery run: then every success counts once.
        await recover();
        const all = sent
          .filter((s) => s.outcome === "success")
          .reduce((sum, s) => sum + s.amountShillings * 100, 0);
        const final = (await paymentCredits(database.db, customer.id)).reduce((a, b) => a + b, 0);
        expect(final - before).toBe(all);
      }),
      { numRuns: concurrent ? 25 : 15 },
    );
    const open = await database.db
      .select({ n: sql<number>`count(*)::int` })
      .from(paymentIntents)
      .where(eq(paymentIntents.status, "succeeded"));
    expect(open[0]!.n).toBeGreaterThan(0);
  });
});

function shuffle<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let state = seed >>> 0 || 1;
  for (let i = out.length - 1; i > 0; i--) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
