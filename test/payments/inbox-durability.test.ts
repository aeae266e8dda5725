import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BillingContext } from "../../src/billing/context.ts";
import { MINUTE } from "../../src/clock.ts";
import {
  maxInboxAttempts,
  retryInbox,
  slowRetryEveryMs,
  slowRetryForMs,
} from "../../src/payments/mpesa/inbox-retry.ts";
import { processStoredRequest } from "../../src/payments/mpesa/process.ts";
import { activeSubscriber } from "../support/billing.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";
import { type Harness, intent, paymentCredits, startHarness } from "./harness.ts";
import {
  breakPaymentInserts,
  c2bConfirmation,
  c2bConfirmUrl,
  freshReceipt,
  inboxRowsAfter,
  lastInboxId,
  paymentsByRef,
  postRaw,
} from "./inbox-support.ts";
import { c2bSuccess, type InboxWorld, json, shortcode, startInboxWorld, stkAccepted } from "./inbox-world.ts";

/**
 * The M-Pesa inbox over real HTTP: nothing stored is lost when processing or the database fails,
 * and a request kept for a retry is credited once.
 */

let world: InboxWorld;
let clock: InboxWorld["clock"];
let database: InboxWorld["database"];
let ctx: InboxWorld["ctx"];
let h: InboxWorld["h"];
let plan: InboxWorld["plan"];
let pendingPush: InboxWorld["pendingPush"];
let postAndRead: InboxWorld["postAndRead"];
beforeAll(async () => {
  world = await startInboxWorld();
  ({ clock, database, ctx, h, plan, pendingPush, postAndRead } = world);
});
afterAll(async () => {
  await world?.close();
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
    /**
     * With the database away, a pending push's callback and another subscriber's paybill payment of
     * `paybillAmount` are posted; both are answered 200 and spooled.
     */
    async function postedDuringOutage(paybillAmount: string) {
      const pending = await pendingPush();
      const payer = (await activeSubscriber(ctx, plan.id)).customer;
      const payerBefore = await paymentCredits(database.db, payer.id);
      const mark = await lastInboxId(database.db);
      flaky.db = dead.db;
      const stkText = JSON.stringify(pending.push.body);
      const stk = await postRaw(s.stkUrl, stkText);
      expect(stk.status).toBe(200);
      const c2bText = JSON.stringify(
        c2bConfirmation({
          transId: freshReceipt(),
          billRef: payer.accountNumber,
          amount: paybillAmount,
          shortcode,
        }),
      );
      const c2b = await postRaw(c2bConfirmUrl(s), c2bText);
      expect(c2b.status).toBe(200);
      expect(await spooled()).toHaveLength(2);
      return { ...pending, payer, payerBefore, mark, stkText, stk, c2bText, c2b };
    }

    it("a request the database cannot take is answered 200, spooled, then imported and credited once", async () => {
      const { customer, sent, push, before, payer, payerBefore, mark, stkText, stk, c2bText, c2b } =
        await postedDuringOutage("700.00");
      expect(json(stk.text)).toEqual(stkAccepted);
      expect(json(c2b.text)).toEqual(c2bSuccess);
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
      const { customer, sent, push, before, payer, payerBefore, mark, stkText, c2bText } =
        await postedDuringOutage("600.00");

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
