import { eq, sql } from "drizzle-orm";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { BillingContext } from "../../src/billing/context.ts";
import { applyPaymentsInTx } from "../../src/billing/payments.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { queryRows } from "../../src/db/client.ts";
import { subscriptions } from "../../src/db/schema/index.ts";
import { eventually } from "../payments/dispatch-support.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase, onRealPostgres, type TestDatabase } from "../support/db.ts";

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

async function sessionsWaitingForLocks(): Promise<number> {
  const [row] = await queryRows<{ n: number }>(
    database.db,
    sql`select count(*)::int as n from pg_stat_activity
        where datname = current_database() and wait_event_type = 'Lock'`,
  );
  return row?.n ?? 0;
}

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
    const other = postgres(database.url!, { max: 1 });
    let release = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let holdingNow = () => {};
    const holds = new Promise<void>((resolve) => {
      holdingNow = resolve;
    });
    const holding = other.begin(async (tx) => {
      await tx`select id from subscriptions where id = ${b.subscriptionId} for update`;
      holdingNow();
      await released;
    });
    let outcomes: PromiseSettledResult<unknown>[];
    try {
      await holds;
      const first = database.db.transaction((tx) =>
        applyPaymentsInTx(tx, ctx, admin, [paid(a, "RA00000001"), paid(b, "RB00000001")]),
      );
      await eventually(async () => ((await sessionsWaitingForLocks()) >= 1 ? true : undefined), 15_000);
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
        async () => (secondDone || (await sessionsWaitingForLocks()) >= 2 ? true : undefined),
        15_000,
      );
      release();
      outcomes = await Promise.allSettled([first, second]);
    } finally {
      release();
      await holding;
      await other.end();
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
