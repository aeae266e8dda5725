import { expect } from "vitest";
import { FakeClock } from "../../src/clock.ts";
import { activeSubscriber, billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { pay, paymentCredits, startHarness } from "./harness.ts";
import {
  type Chunked,
  c2bConfirmUrl,
  c2bValidateUrl,
  inboxRowsAfter,
  lastInboxId,
  postRaw,
} from "./inbox-support.ts";

/**
 * The world the M-Pesa inbox tests share (inbox-*.test.ts): a database of their own, the Daraja fake
 * and the M-Pesa routes over real HTTP with the paybill URLs registered, and a plan to subscribe to.
 */

export const shortcode = "174379";
export const stkAccepted = { ResultCode: 0, ResultDesc: "Accepted" };
export const c2bSuccess = { ResultCode: 0, ResultDesc: "Success" };

export const json = (text: string): unknown => JSON.parse(text);

export type InboxWorld = Awaited<ReturnType<typeof startInboxWorld>>;

export async function startInboxWorld() {
  const clock = new FakeClock("2026-04-01T08:00:00Z");
  const database = await createTestDatabase();
  const ctx = billingContext(database.db, clock).ctx;
  const h = await startHarness(ctx, { fake: { shortcode }, routes: { shortcode } });
  await h.client.registerC2bUrls({ confirmationUrl: c2bConfirmUrl(h), validationUrl: c2bValidateUrl(h) });
  const plan = await createPlan(database.db, { priceCents: 100_000 });

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

  return {
    clock,
    database,
    ctx,
    h,
    plan,
    pendingPush,
    postAndRead,
    async close() {
      await h.close();
      await database.close();
    },
  };
}
