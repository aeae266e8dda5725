import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyPayment } from "../../src/billing/payments.ts";
import { updatePlan } from "../../src/billing/plans.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { suspendSubscription } from "../../src/billing/suspend-resume.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { plans, provisioningOutbox, subscriptions } from "../../src/db/schema/index.ts";
import type { RouterOsEmulator } from "../../src/network/emulator/server.ts";
import { reconcileRouter } from "../../src/network/reconcile.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { emulatedRouter, networkStack } from "./support.ts";

/**
 * Sessions dropped together, one of which hangs up first: RouterOS refuses a remove naming an id
 * that is gone, the whole list with it. The others must still be dropped.
 */

let database: Database;
let router: RouterOsEmulator;
let routerId: number;
let stack: ReturnType<typeof networkStack>;
const clock = new FakeClock(new Date());
beforeAll(async () => {
  database = await createTestDatabase();
  ({ emulator: router, routerId } = await emulatedRouter(database.db));
  stack = networkStack(database.db, clock);
});
afterAll(async () => {
  await stack.close();
  await router.stop();
  await database.close();
});
const ctx = () => billingContext(database.db, clock).ctx;

async function paidSubscriber(planId: number, name: string) {
  const { customer, subscription, invoice } = await createCustomerWithSubscription(ctx(), admin, {
    name,
    phone: uniquePhone(),
    planId,
    routerId,
  });
  await applyPayment(ctx(), admin, {
    customerId: customer.id,
    method: "cash",
    provider: "cash",
    providerRef: `drop-${customer.id}`,
    amountCents: invoice.amountCents,
  });
  return subscription;
}

/** The session `id()` hangs up right after the sessions are listed, before they are removed. */
function hangsUpAfterListing(id: () => string) {
  let done = false;
  router.faults.holdUntil = (command) => {
    if (done || command.command !== "/ppp/active/print") return null;
    done = true;
    router.delete("/ppp/active", id());
    return Promise.resolve();
  };
}

describe("dropping several sessions when one hangs up first", () => {
  it("a suspended subscriber's live session is dropped when their stale one hangs up first", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const subscription = await paidSubscriber(plan.id, "Two Sessions");
    await stack.worker.drain();
    const stale = router.connectPppoe(subscription.networkUsername);
    router.connectPppoe(subscription.networkUsername);
    await suspendSubscription(ctx(), admin, { subscriptionId: subscription.id, reason: "abuse report" });
    hangsUpAfterListing(() => stale);
    try {
      await stack.worker.drain();
    } finally {
      router.faults.holdUntil = null;
    }
    expect(router.find("/ppp/secret", subscription.networkUsername)?.disabled).toBe("true");
    expect(router.find("/ppp/active", subscription.networkUsername)).toBeUndefined();
  });

  it("a plan's speed change reconnects its other subscribers when one hangs up first", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const a = await paidSubscriber(plan.id, "Speed A");
    const b = await paidSubscriber(plan.id, "Speed B");
    await stack.worker.drain();
    const sessionA = router.connectPppoe(a.networkUsername);
    router.connectPppoe(b.networkUsername);
    const [row] = await database.db.select().from(plans).where(eq(plans.id, plan.id));
    await updatePlan(ctx(), admin, row!.code, { rateLimit: "20M/40M" });
    hangsUpAfterListing(() => sessionA);
    try {
      await stack.worker.drain();
    } finally {
      router.faults.holdUntil = null;
    }
    // Dropped, B's router redials and comes back at the new speed.
    expect(router.find("/ppp/active", b.networkUsername)).toBeUndefined();
    const pending = await database.db
      .select()
      .from(provisioningOutbox)
      .where(eq(provisioningOutbox.status, "pending"));
    expect(pending).toEqual([]);
  });

  it("the reconciliation drops a suspended subscriber's live session when their stale one hangs up first", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const subscription = await paidSubscriber(plan.id, "Drifted");
    await stack.worker.drain();
    // Suspended in the database, the router never told (its job lost in a restore from backup).
    await database.db
      .update(subscriptions)
      .set({ status: "suspended", suspendedReason: "admin" })
      .where(eq(subscriptions.id, subscription.id));
    const stale = router.connectPppoe(subscription.networkUsername);
    router.connectPppoe(subscription.networkUsername);
    hangsUpAfterListing(() => stale);
    try {
      const result = await reconcileRouter({ db: database.db, clock, pool: stack.pool }, routerId);
      expect(result.ok).toBe(true);
    } finally {
      router.faults.holdUntil = null;
    }
    expect(router.find("/ppp/secret", subscription.networkUsername)?.disabled).toBe("true");
    expect(router.find("/ppp/active", subscription.networkUsername)).toBeUndefined();
  });
});
