import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cancelSubscription } from "../../src/billing/cancel-subscription.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { placeSubscription } from "../../src/billing/placement.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { suspendSubscription } from "../../src/billing/suspend-resume.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { auditLog } from "../../src/db/schema/index.ts";
import type { RouterOsEmulator } from "../../src/network/emulator/server.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { emulatedRouter, networkStack } from "./support.ts";

/**
 * A subscriber put on a router after they were added without one, then moved to another router:
 * the PPPoE secret follows them, through the real client and two emulated routers.
 */
let database: Database;
let first: { emulator: RouterOsEmulator; routerId: number };
let second: { emulator: RouterOsEmulator; routerId: number };
let stack: ReturnType<typeof networkStack>;
const clock = new FakeClock(new Date());
beforeAll(async () => {
  database = await createTestDatabase();
  first = await emulatedRouter(database.db);
  second = await emulatedRouter(database.db);
  stack = networkStack(database.db, clock);
});
afterAll(async () => {
  await stack.close();
  await first.emulator.stop();
  await second.emulator.stop();
  await database.close();
});

describe("placing a subscriber on a router", () => {
  it("one added with no router and paid gets their secret where placed, and it moves with them", async () => {
    const { ctx } = billingContext(database.db, clock);
    const plan = await createPlan(database.db, { priceCents: 150_000 });
    const { customer, subscription, invoice } = await createCustomerWithSubscription(ctx, admin, {
      name: "Placed Later",
      phone: uniquePhone(),
      planId: plan.id,
    });
    await applyPayment(ctx, admin, {
      customerId: customer.id,
      method: "cash",
      provider: "cash",
      providerRef: `place-${subscription.id}`,
      amountCents: invoice.amountCents,
    });
    await stack.worker.drain();
    const username = subscription.networkUsername;
    expect([
      first.emulator.find("/ppp/secret", username),
      second.emulator.find("/ppp/secret", username),
    ]).toEqual([undefined, undefined]);

    expect(
      await placeSubscription(ctx, admin, { subscriptionId: subscription.id, routerId: first.routerId }),
    ).toEqual({ fromRouterId: null, toRouterId: first.routerId });
    await stack.worker.drain();
    expect(first.emulator.find("/ppp/secret", username)).toMatchObject({ disabled: "false" });

    await placeSubscription(ctx, admin, { subscriptionId: subscription.id, routerId: second.routerId });
    await stack.worker.drain();
    expect(first.emulator.find("/ppp/secret", username)).toBeUndefined();
    expect(second.emulator.find("/ppp/secret", username)).toMatchObject({
      disabled: "false",
      comment: `tandao:sub:${subscription.id}`,
    });
    const moves = await database.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.action, "subscription.placed"), eq(auditLog.entityId, String(subscription.id))));
    expect(moves.map((m) => m.details)).toEqual([
      { customerId: customer.id, fromRouterId: null, toRouterId: first.routerId },
      { customerId: customer.id, fromRouterId: first.routerId, toRouterId: second.routerId },
    ]);

    await expect(
      placeSubscription(ctx, admin, { subscriptionId: subscription.id, routerId: second.routerId }),
    ).rejects.toThrow(/already on that router/);
    await expect(
      placeSubscription(ctx, admin, { subscriptionId: subscription.id, routerId: 999_999 }),
    ).rejects.toThrow(/router does not exist/);
    await cancelSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "moved away" });
    await expect(
      placeSubscription(ctx, admin, { subscriptionId: subscription.id, routerId: first.routerId }),
    ).rejects.toThrow(/cancelled/);
  });
});

describe("a row queued before the subscriber was placed, next to the rows queued after", () => {
  it("two workers do not write the same secret at once: a suspension delivered meanwhile is not undone", async () => {
    await stack.worker.drain();
    const { ctx } = billingContext(database.db, clock);
    const plan = await createPlan(database.db, { priceCents: 150_000 });
    // Paid before being placed: its restore row names no router.
    const { customer, subscription, invoice } = await createCustomerWithSubscription(ctx, admin, {
      name: "Placed While Queued",
      phone: uniquePhone(),
      planId: plan.id,
    });
    await stack.worker.drain();
    await applyPayment(ctx, admin, {
      customerId: customer.id,
      method: "cash",
      provider: "cash",
      providerRef: `queued-${subscription.id}`,
      amountCents: invoice.amountCents,
    });
    await placeSubscription(ctx, admin, { subscriptionId: subscription.id, routerId: first.routerId });
    const username = subscription.networkUsername;
    // One worker takes the row queued first (one row per batch); while its first command waits for
    // the router's answer, the admin suspends the subscriber and a second worker runs.
    const one = networkStack(database.db, clock, { worker: { batchSize: 1 } });
    const two = networkStack(database.db, clock);
    let held = false;
    let deliveredMeanwhile = -1;
    first.emulator.faults.holdUntil = (command) => {
      if (held || command.command !== "/ppp/profile/print") return null;
      held = true;
      return (async () => {
        await suspendSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "abuse report" });
        deliveredMeanwhile = await two.worker.drain();
      })();
    };
    try {
      await one.worker.drain();
      await two.worker.drain();
      expect(held).toBe(true);
      expect(first.emulator.find("/ppp/secret", username)).toMatchObject({ disabled: "true" });
      // The second worker left the subscriber's secret to the one already writing it.
      expect(deliveredMeanwhile).toBe(0);
      expect(second.emulator.find("/ppp/secret", username)).toBeUndefined();
    } finally {
      first.emulator.faults.holdUntil = null;
      await one.close();
      await two.close();
    }
  });
});
