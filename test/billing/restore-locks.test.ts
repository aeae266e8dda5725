import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BillingContext } from "../../src/billing/context.ts";
import { applyPaymentsInTx } from "../../src/billing/payments.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { subscriptions } from "../../src/db/schema/index.ts";
import { eventually } from "../payments/dispatch-support.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase, onRealPostgres, type TestDatabase } from "../support/db.ts";
import { holdLock, sessionsWaitingForLocks, waitingForLocks } from "../support/locks.ts";

/**
 * Payments that bring service back lock the subscriptions they restore, not the plans those are
 * on: a plan is shared by many customers, so a lock on it would make payments for different
 * customers wait on one another, and two batches restoring customers of two plans in opposite
 * orders would deadlock. Races only happen on a real server.
 */
let database: TestDatabase;
let ctx: BillingContext;

beforeAll(async () => {
  database = await createTestDatabase({ maxConnections: 10 });
  ctx = billingContext(database.db).ctx;
});
afterAll(async () => {
  await database?.close();
});

/** A new subscriber whose service starts when the first invoice is paid. */
async function waitingForFirstPayment(planId: number, name: string) {
  const created = await createCustomerWithSubscription(ctx, admin, { name, phone: uniquePhone(), planId });
  return {
    id: created.customer.id,
    subscriptionId: created.subscription.id,
    owes: created.invoice.amountCents,
  };
}

const paid = (customer: { id: number; owes: number }, receipt: string) => ({
  customerId: customer.id,
  method: "mpesa_stk" as const,
  provider: "mpesa",
  providerRef: receipt,
  amountCents: customer.owes,
});

describe.runIf(onRealPostgres())("payments restoring service", () => {
  it("two batches activating subscribers of two plans, in opposite orders: both commit", async () => {
    const p = await createPlan(database.db, { priceCents: 100_000 });
    const q = await createPlan(database.db, { priceCents: 200_000 });
    const a = await waitingForFirstPayment(p.id, "A on P");
    const b = await waitingForFirstPayment(q.id, "B on Q");
    const c = await waitingForFirstPayment(q.id, "C on Q");
    const d = await waitingForFirstPayment(p.id, "D on P");

    // Another session holds B's subscription, so the first batch stops between its two restores
    // (A's done, B's waiting) while the second batch restores C and then D.
    const holding = await holdLock(
      database.url!,
      (tx) => tx`select id from subscriptions where id = ${b.subscriptionId} for update`,
    );
    let outcomes: PromiseSettledResult<unknown>[];
    try {
      const first = database.db.transaction((tx) =>
        applyPaymentsInTx(tx, ctx, admin, [paid(a, "RA00000001"), paid(b, "RB00000001")]),
      );
      await eventually(waitingForLocks(database.db, 1), 15_000);
      let secondDone = false;
      const second = database.db
        .transaction((tx) =>
          applyPaymentsInTx(tx, ctx, admin, [paid(c, "RC00000001"), paid(d, "RD00000001")]),
        )
        .finally(() => {
          secondDone = true;
        });
      // The second batch either commits or waits behind the first.
      await eventually(
        async () => (secondDone || (await sessionsWaitingForLocks(database.db)) >= 2 ? true : undefined),
        15_000,
      );
      await holding.release();
      outcomes = await Promise.allSettled([first, second]);
    } finally {
      await holding.release();
    }
    const failures = outcomes.flatMap((o) =>
      o.status === "rejected"
        ? [
            String(
              (o.reason as { cause?: { message?: string } }).cause?.message ?? (o.reason as Error).message,
            ),
          ]
        : [],
    );
    expect(failures).toEqual([]);
    for (const customer of [a, b, c, d]) {
      const [subscription] = await database.db
        .select({ status: subscriptions.status })
        .from(subscriptions)
        .where(eq(subscriptions.id, customer.subscriptionId));
      expect(subscription).toEqual({ status: "active" });
    }
  });
});
