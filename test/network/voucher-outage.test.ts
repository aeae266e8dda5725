import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyPayment } from "../../src/billing/payments.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { resumeSubscription, suspendSubscription } from "../../src/billing/suspend-resume.ts";
import { sellVoucherInTx } from "../../src/billing/vouchers.ts";
import { FakeClock } from "../../src/clock.ts";
import { type Database, queryRows } from "../../src/db/client.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { emulatedRouter, networkStack, waitFor } from "./support.ts";

// A database of its own: every router registered here is one this test controls.
let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

describe("a voucher for every router while one router is down", () => {
  it("a router that is down does not keep a voucher from the routers that are up, and gets it when back", async () => {
    const one = await emulatedRouter(database.db);
    const two = await emulatedRouter(database.db);
    const clock = new FakeClock(new Date());
    const stack = networkStack(database.db, clock);
    try {
      const { ctx } = billingContext(database.db, clock);
      const plan = await createPlan(database.db, {
        priceCents: 2_000,
        kind: "hotspot",
        periodUnit: "hours",
        periodCount: 3,
      });
      await one.emulator.stop();
      const sold = await database.db.transaction((tx) =>
        sellVoucherInTx(tx, ctx, admin, { planId: plan.id, phone: uniquePhone(), language: "en" }),
      );
      await stack.worker.drain();
      expect(two.emulator.find("/ip/hotspot/user", sold.code)).toBeDefined();
      await one.emulator.start();
      await waitFor(async () => {
        clock.advance(10 * 60_000);
        await stack.worker.drain();
        return one.emulator.find("/ip/hotspot/user", sold.code) !== undefined;
      });
      const rows = await queryRows<{ status: string; last_error: string | null }>(
        database.db,
        sql`select status, last_error from provisioning_outbox where voucher_id = ${sold.voucherId}`,
      );
      expect(rows).toMatchObject([{ status: "done" }]);
    } finally {
      await stack.close();
      await one.emulator.stop();
      await two.emulator.stop();
    }
  });
});

describe("a worker that runs out of lease time", () => {
  it("puts the rows it did not start back in the queue untouched, and they are delivered later", async () => {
    const tower = await emulatedRouter(database.db);
    const steady = new FakeClock(new Date());
    const { ctx } = billingContext(database.db, steady);
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const names: string[] = [];
    for (let i = 0; i < 6; i++) {
      const { subscription } = await createCustomerWithSubscription(ctx, admin, {
        name: `Lease ${i}`,
        phone: uniquePhone(),
        planId: plan.id,
        routerId: tower.routerId,
      });
      names.push(subscription.networkUsername);
    }
    // Each secret takes the router half a minute: the 120 s lease leaves time to start three rows.
    tower.emulator.faults.delayFor = (command) => {
      if (command.command === "/ppp/secret/add") steady.advance(30_000);
      return 0;
    };
    const hurried = networkStack(database.db, steady, { worker: { perRouterConcurrency: 1 } });
    const addsBefore = tower.emulator.count("/ppp/secret/add");
    let claims = 0;
    try {
      claims = await hurried.worker.drain();
    } finally {
      await hurried.close();
      await tower.emulator.stop();
    }
    // Rows were handed back and claimed again (more claims than rows), yet each was applied once.
    expect(claims).toBeGreaterThan(names.length);
    expect(tower.emulator.count("/ppp/secret/add") - addsBefore).toBe(names.length);
    for (const name of names) expect(tower.emulator.find("/ppp/secret", name)).toBeDefined();
    const [open] = await queryRows<{ n: number }>(
      database.db,
      sql`select count(*)::int as n from provisioning_outbox where status = 'pending' or attempts > 1`,
    );
    expect(Number(open?.n)).toBe(0);
  });

  it("a row cut short by its lease waits out a back-off before the router is asked again", async () => {
    const tower = await emulatedRouter(database.db);
    const clock = new FakeClock(new Date());
    const { ctx } = billingContext(database.db, clock);
    const stack = networkStack(database.db, clock, {
      worker: { backoffBaseMs: 5_000, backoffMaxMs: 60_000 },
    });
    try {
      const plan = await createPlan(database.db, { priceCents: 100_000 });
      const { subscription } = await createCustomerWithSubscription(ctx, admin, {
        name: "Cut Short",
        phone: uniquePhone(),
        planId: plan.id,
        routerId: tower.routerId,
      });
      // The router stalls on the lookup of the secret until too little of the lease (120 s) is
      // left to send the next command.
      let stalled = false;
      let resumeRouter = () => {};
      const stall = new Promise<void>((resolve) => {
        resumeRouter = resolve;
      });
      tower.emulator.faults.holdUntil = (command) => {
        if (stalled || command.command !== "/ppp/secret/print") return null;
        stalled = true;
        return stall;
      };
      const delivery = stack.worker.drain();
      await waitFor(() => stalled);
      clock.advance(80_000);
      resumeRouter();
      expect(await delivery).toBe(1);
      const secret = () => tower.emulator.find("/ppp/secret", subscription.networkUsername);
      expect(secret()).toBeUndefined();

      // Not due again at once: the router is left alone until the back-off is over.
      const asked = tower.emulator.received.length;
      expect(await stack.worker.drain()).toBe(0);
      expect(tower.emulator.received.length).toBe(asked);
      clock.advance(6_000);
      expect(await stack.worker.drain()).toBe(1);
      expect(secret()?.disabled).toBe("true");
      // The stalled delivery used up an attempt: a router that stalls every time ends in an alert.
      const [row] = await queryRows<{ status: string; attempts: number }>(
        database.db,
        sql`select status, attempts from provisioning_outbox where subscription_id = ${subscription.id}`,
      );
      expect(row).toMatchObject({ status: "done", attempts: 2 });
    } finally {
      await stack.close();
      await tower.emulator.stop();
    }
  });

  it("a suspension stalled at the router past its lease does not cut off the subscriber restored meanwhile", async () => {
    const tower = await emulatedRouter(database.db);
    const clock = new FakeClock(new Date());
    const { ctx } = billingContext(database.db, clock);
    const instanceA = networkStack(database.db, clock);
    const instanceB = networkStack(database.db, clock);
    try {
      const plan = await createPlan(database.db, { priceCents: 100_000 });
      const { customer, subscription, invoice } = await createCustomerWithSubscription(ctx, admin, {
        name: "Stalled Suspension",
        phone: uniquePhone(),
        planId: plan.id,
        routerId: tower.routerId,
      });
      await applyPayment(ctx, admin, {
        customerId: customer.id,
        method: "cash",
        provider: "cash",
        providerRef: `stall-${customer.id}`,
        amountCents: invoice.amountCents,
      });
      await instanceA.worker.drain();
      const secret = () => tower.emulator.find("/ppp/secret", subscription.networkUsername);
      expect(secret()?.disabled).toBe("false");

      // Instance A delivers the suspension; the router stalls on its lookup of the secret until
      // A's lease (120 s) is over. Meanwhile the subscriber pays and instance B restores them.
      await suspendSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "unpaid" });
      let stalled = false;
      let resumeRouter = () => {};
      const stall = new Promise<void>((resolve) => {
        resumeRouter = resolve;
      });
      tower.emulator.faults.holdUntil = (command) => {
        if (stalled || command.command !== "/ppp/secret/print") return null;
        stalled = true;
        return stall;
      };
      const deliveryA = instanceA.worker.drain();
      await waitFor(() => stalled);
      clock.advance(130_000);
      await resumeSubscription(ctx, admin, { subscriptionId: subscription.id, reason: "paid" });
      await instanceB.worker.drain();
      expect(secret()?.disabled).toBe("false");
      resumeRouter();
      await deliveryA;

      expect(secret()?.disabled).toBe("false");
    } finally {
      await instanceA.close();
      await instanceB.close();
      await tower.emulator.stop();
    }
  });

  it("a profile check cut short by its lease does not fail the rows of a later batch waiting on it", async () => {
    const tower = await emulatedRouter(database.db);
    const clock = new FakeClock(new Date());
    const { ctx } = billingContext(database.db, clock);
    const { pool, worker, close } = networkStack(database.db, clock);
    const paidSubscriber = async (planId: number, name: string) => {
      const { customer, subscription, invoice } = await createCustomerWithSubscription(ctx, admin, {
        name,
        phone: uniquePhone(),
        planId,
        routerId: tower.routerId,
      });
      await applyPayment(ctx, admin, {
        customerId: customer.id,
        method: "cash",
        provider: "cash",
        providerRef: `check-${customer.id}`,
        amountCents: invoice.amountCents,
      });
      return subscription;
    };
    try {
      // A plan whose profile is not on the router yet: the first delivery checks for it.
      const plan = await createPlan(database.db, { priceCents: 100_000 });
      const early = await paidSubscriber(plan.id, "Early Batch");
      let later: Awaited<ReturnType<typeof paidSubscriber>> | undefined;
      let laterBatch: Promise<number> | undefined;
      let stalled = false;
      // The router stalls on the lookup of the profile until too little of the first batch's lease
      // is left to add it. Meanwhile another subscriber pays and the worker claims their rows; their
      // delivery, with a lease of its own, waits on the same check.
      tower.emulator.faults.holdUntil = (command) => {
        if (stalled || command.command !== "/ppp/profile/print") return null;
        stalled = true;
        return (async () => {
          clock.advance(80_000);
          later = await paidSubscriber(plan.id, "Later Batch");
          // Their delivery has read the database and is handed the connection: it joins the check.
          const joined = new Promise<void>((resolve) => {
            pool.handingOut = () => resolve();
          });
          laterBatch = worker.drain();
          await joined;
        })();
      };
      await worker.drain();
      expect(stalled).toBe(true);
      await laterBatch;
      // The later subscriber is online without waiting for the first batch's row to be retried.
      expect(tower.emulator.find("/ppp/secret", later!.networkUsername)?.disabled).toBe("false");
      expect(tower.emulator.find("/ppp/secret", early.networkUsername)).toBeUndefined();
      // The row cut short is delivered after its back-off.
      clock.advance(1_000);
      await worker.drain();
      expect(tower.emulator.find("/ppp/secret", early.networkUsername)?.disabled).toBe("false");
    } finally {
      await close();
      await tower.emulator.stop();
    }
  });
});
