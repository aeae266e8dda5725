import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UNANSWERED_ASK_EVERY_MS } from "../../src/billing/intents/timeout.ts";
import { DAY, FakeClock, MINUTE } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { runRecoveryJob } from "../../src/payments/mpesa/recovery.ts";
import { billingContext } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import {
  type Harness,
  intent,
  pay,
  paymentCredits,
  startHarness,
  subscriptionStatus,
  suspendedSubscriber,
} from "./harness.ts";

/**
 * A push whose callback is lost while Daraja's status query fails (an incident at Safaricom, our
 * network down) times out with no answer. It may have been paid: M-Pesa is asked about it again
 * until it answers, for a day; after that the admins are told.
 */

let database: Database;
let h: Harness;
const clock = new FakeClock("2026-08-03T08:00:00Z");
let ctx: ReturnType<typeof billingContext>["ctx"];

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  h = await startHarness(ctx);
});
afterAll(async () => {
  await h?.close();
  await database?.close();
});

const incident = { status: 503, errorCode: "503.001.01", errorMessage: "Service Unavailable" };

/** A paid push whose callback never comes, run through recovery until it times out in an incident. */
async function timedOutInIncident(outcome: "success" | "cancelled", amountCents: number) {
  const { customer, subscription } = await suspendedSubscriber(ctx, clock, amountCents);
  const before = await paymentCredits(database.db, customer.id);
  const sent = await pay(
    h,
    ctx,
    { customerId: customer.id, phone: customer.phone, amountCents },
    { outcome, delayMs: 0, lost: true },
  );
  h.fake.queryOutage = incident;
  const start = clock.now();
  for (let minutes = 3; minutes <= 16; minutes++) {
    clock.set(new Date(start.getTime() + minutes * MINUTE));
    await runRecoveryJob(h.recovery);
  }
  expect((await intent(database.db, sent.id)).status).toBe("timed_out");
  return { customer, subscription, before, sent };
}

describe("a push that timed out while M-Pesa could not be asked", () => {
  it("is credited once M-Pesa answers that it was paid, and asked about no more", async () => {
    const { customer, subscription, before, sent } = await timedOutInIncident("success", 70_000);
    expect(await paymentCredits(database.db, customer.id)).toEqual(before);

    // Still down a few minutes later: asked again, no answer, nothing changes.
    clock.advance(UNANSWERED_ASK_EVERY_MS);
    expect(await runRecoveryJob(h.recovery)).toMatchObject({ queried: 1, settled: 0, unresolved: 0 });
    // Not before its next time to ask.
    clock.advance(MINUTE);
    expect(await runRecoveryJob(h.recovery)).toMatchObject({ queried: 0 });

    h.fake.queryOutage = null;
    clock.advance(UNANSWERED_ASK_EVERY_MS);
    expect(await runRecoveryJob(h.recovery)).toMatchObject({ queried: 1, settled: 1 });
    expect((await intent(database.db, sent.id)).status).toBe("succeeded");
    expect(await paymentCredits(database.db, customer.id)).toEqual([...before, 70_000]);
    expect(await subscriptionStatus(database.db, subscription.id)).toBe("active");
    clock.advance(DAY);
    expect(await runRecoveryJob(h.recovery)).toMatchObject({ queried: 0 });
  });

  it("that M-Pesa then says was cancelled is asked about no more, and credits nothing", async () => {
    const { customer, before, sent } = await timedOutInIncident("cancelled", 60_000);
    h.fake.queryOutage = null;
    clock.advance(UNANSWERED_ASK_EVERY_MS);
    expect(await runRecoveryJob(h.recovery)).toMatchObject({ queried: 1, settled: 1 });
    const after = await intent(database.db, sent.id);
    expect(after.status).toBe("timed_out");
    expect(after.nextQueryAt).toBeNull();
    expect(after.unresolvedAt).toBeNull();
    clock.advance(DAY);
    expect(await runRecoveryJob(h.recovery)).toMatchObject({ queried: 0 });
    expect(await paymentCredits(database.db, customer.id)).toEqual(before);
  });

  it("with no answer for a day is marked unresolved once, and asked about no more", async () => {
    const { sent } = await timedOutInIncident("success", 50_000);
    clock.set(new Date(sent.sentAt!.getTime() + DAY - MINUTE));
    expect(await runRecoveryJob(h.recovery)).toMatchObject({ queried: 1, unresolved: 0 });
    clock.set(new Date(sent.sentAt!.getTime() + DAY + 5 * MINUTE));
    expect(await runRecoveryJob(h.recovery)).toMatchObject({ queried: 1, unresolved: 1 });
    const after = await intent(database.db, sent.id);
    expect(after).toMatchObject({ status: "timed_out", nextQueryAt: null, unresolvedAt: clock.now() });
    clock.advance(DAY);
    expect(await runRecoveryJob(h.recovery)).toMatchObject({ queried: 0, unresolved: 0 });
    h.fake.queryOutage = null;
  });
});
