import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyPayment } from "../../src/billing/payments.ts";
import { changePlan } from "../../src/billing/plan-change.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { resumeSubscription, suspendSubscription } from "../../src/billing/suspend-resume.ts";
import { retryDeadProvisioningInTx } from "../../src/bots/admin/ops-queries.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { messageOutbox, provisioningOutbox } from "../../src/db/schema/index.ts";
import type { WorkerOptions } from "../../src/network/worker.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { emulatedRouter, networkStack } from "./support.ts";

/**
 * Rows whose attempts run out: given up with an alert to the admin, whatever made them fail, and
 * without losing what they still owed the subscriber.
 */

const ADMIN = "+254700000555";
let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

const clock = new FakeClock(new Date());
const ctx = () => billingContext(database.db, clock).ctx;

/** A router of the test's own (alerts are one per router and hour), and a worker for it. */
async function towerAndWorker(worker: Partial<WorkerOptions>) {
  const tower = await emulatedRouter(database.db);
  const stack = networkStack(database.db, clock, { worker: { adminPhone: ADMIN, ...worker } });
  return {
    ...tower,
    stack,
    close: async () => {
      await stack.close();
      await tower.emulator.stop();
    },
  };
}

async function rowOf(subscriptionId: number) {
  const [row] = await database.db
    .select()
    .from(provisioningOutbox)
    .where(eq(provisioningOutbox.subscriptionId, subscriptionId))
    .orderBy(provisioningOutbox.id);
  return row!;
}

async function alertsMentioning(text: string) {
  const alerts = await database.db
    .select()
    .from(messageOutbox)
    .where(and(eq(messageOutbox.template, "admin_alert"), eq(messageOutbox.recipient, ADMIN)));
  return alerts.filter((a) => String(a.params.text).includes(text));
}

async function subscriberOn(routerId: number, planId: number, name: string) {
  return createCustomerWithSubscription(ctx(), admin, { name, phone: uniquePhone(), planId, routerId });
}

describe("a router that stalls every delivery past its lease", () => {
  it("the row uses up its attempts, is given up and the admin told", async () => {
    const t = await towerAndWorker({ maxAttempts: 3 });
    try {
      const plan = await createPlan(database.db, { priceCents: 100_000 });
      const { subscription } = await subscriberOn(t.routerId, plan.id, "Stalled Always");
      // The router answers the lookup of the secret only when too little of the lease is left to
      // send the next command.
      t.emulator.faults.delayFor = (command) => {
        if (command.command === "/ppp/secret/print") clock.advance(80_000);
        return 0;
      };
      for (let i = 0; i < 6 && (await rowOf(subscription.id)).status === "pending"; i++) {
        await t.stack.worker.drain();
        clock.advance(10 * 60_000);
      }
      expect(await rowOf(subscription.id)).toMatchObject({ status: "dead", attempts: 3 });
      expect(await alertsMentioning("the lease of its delivery ends too soon")).toHaveLength(1);
    } finally {
      await t.close();
    }
  });
});

describe("a router that answers everything but one command, never in time", () => {
  it("the row uses up its attempts on the timeouts, is given up and the admin told", async () => {
    const tower = await emulatedRouter(database.db);
    const stack = networkStack(database.db, clock, {
      worker: { adminPhone: ADMIN, maxAttempts: 3 },
      connection: { commandTimeoutMs: 300 },
    });
    try {
      const plan = await createPlan(database.db, { priceCents: 100_000 });
      const { subscription } = await subscriberOn(tower.routerId, plan.id, "Timed Out Always");
      tower.emulator.faults.delayFor = (command) => (command.command === "/ppp/secret/print" ? 1_000 : 0);
      for (let i = 0; i < 8 && (await rowOf(subscription.id)).status === "pending"; i++) {
        await stack.worker.drain();
        clock.advance(10 * 60_000);
      }
      expect(await rowOf(subscription.id)).toMatchObject({ status: "dead", attempts: 3 });
      expect(await alertsMentioning("timed out")).toHaveLength(1);
    } finally {
      tower.emulator.faults.delayFor = null;
      await stack.close();
      await tower.emulator.stop();
    }
  });
});

describe("a row given up while its alert cannot be queued", () => {
  it("the other rows of its batch still wait out their back-off, and it is given up at its next failure", async () => {
    const t = await towerAndWorker({ maxAttempts: 2 });
    // The message queue refuses the admin alert.
    await database.db.execute(
      sql`alter table message_outbox add constraint alert_refused check (template <> 'admin_alert') not valid`,
    );
    try {
      const plan = await createPlan(database.db, { priceCents: 100_000, rateLimit: "fast please" });
      const first = await subscriberOn(t.routerId, plan.id, "Refused First");
      await t.stack.worker.drain();
      expect(await rowOf(first.subscription.id)).toMatchObject({ status: "pending", attempts: 1 });
      // The second subscriber's first attempt is in the same batch as the first's last one.
      const second = await subscriberOn(t.routerId, plan.id, "Refused Second");
      clock.advance(60_000);
      await t.stack.worker.drain();

      const refusal = "invalid value for argument rate-limit";
      expect(await rowOf(second.subscription.id)).toMatchObject({
        status: "pending",
        attempts: 1,
        lastError: refusal,
        claimedUntil: null,
      });
      expect(await rowOf(first.subscription.id)).toMatchObject({ status: "pending", claimedUntil: null });

      await database.db.execute(sql`alter table message_outbox drop constraint alert_refused`);
      clock.advance(60_000);
      await t.stack.worker.drain();
      expect(await rowOf(first.subscription.id)).toMatchObject({ status: "dead", lastError: refusal });
      expect(await rowOf(second.subscription.id)).toMatchObject({ status: "dead", attempts: 2 });
      expect(await alertsMentioning(refusal)).toHaveLength(1);
    } finally {
      await database.db.execute(sql`alter table message_outbox drop constraint if exists alert_refused`);
      await t.close();
    }
  });
});

/**
 * A paying subscriber, online, moved to a faster plan: the router takes the new profile but answers
 * only when too little of the lease is left to drop the session, and the row (one attempt allowed)
 * is given up with the reconnection still owed.
 */
async function upgradeGivenUp(t: Awaited<ReturnType<typeof towerAndWorker>>, name: string) {
  const plan = await createPlan(database.db, { priceCents: 100_000 });
  const { customer, subscription, invoice } = await subscriberOn(t.routerId, plan.id, name);
  const pay = (amountCents: number, ref: string) =>
    applyPayment(ctx(), admin, {
      customerId: customer.id,
      method: "cash",
      provider: "cash",
      providerRef: `${ref}-${customer.id}`,
      amountCents,
    });
  await pay(invoice.amountCents, "owed");
  await t.stack.worker.drain();
  t.emulator.connectPppoe(subscription.networkUsername);

  const fast = await createPlan(database.db, { priceCents: 300_000, rateLimit: "10M/20M" });
  await pay(300_000, "owed-upgrade");
  await changePlan(ctx(), admin, { subscriptionId: subscription.id, planId: fast.id });
  t.emulator.faults.delayFor = (command) => {
    if (command.command === "/ppp/secret/set") clock.advance(80_000);
    return 0;
  };
  await t.stack.worker.drain();
  t.emulator.faults.delayFor = null;
  expect(t.emulator.find("/ppp/secret", subscription.networkUsername)?.profile).toBe(`tandao-${fast.code}`);
  expect(t.emulator.find("/ppp/active", subscription.networkUsername)).toBeDefined();
  const [givenUp] = await database.db
    .select()
    .from(provisioningOutbox)
    .where(
      and(eq(provisioningOutbox.subscriptionId, subscription.id), eq(provisioningOutbox.status, "dead")),
    );
  expect(givenUp?.action).toBe("change_plan");
  return { subscription, fast };
}

describe("a row given up with a reconnection still owed", () => {
  it("the subscriber moved to a faster plan is reconnected onto it at their next delivery, once", async () => {
    const t = await towerAndWorker({ maxAttempts: 1 });
    try {
      const { subscription, fast } = await upgradeGivenUp(t, "Owed Next Row");
      const online = () => t.emulator.find("/ppp/active", subscription.networkUsername) !== undefined;

      // Suspended and resumed after a check: the router already holds that state, nothing changes.
      await suspendSubscription(ctx(), admin, { subscriptionId: subscription.id, reason: "check" });
      await resumeSubscription(ctx(), admin, { subscriptionId: subscription.id, reason: "checked" });
      clock.advance(60_000);
      await t.stack.worker.drain();
      expect(t.emulator.find("/ppp/secret", subscription.networkUsername)).toMatchObject({
        profile: `tandao-${fast.code}`,
        disabled: "false",
      });
      expect(online()).toBe(false);

      // The subscriber's next connection is not dropped by a later delivery.
      t.emulator.connectPppoe(subscription.networkUsername);
      await suspendSubscription(ctx(), admin, { subscriptionId: subscription.id, reason: "check again" });
      await resumeSubscription(ctx(), admin, { subscriptionId: subscription.id, reason: "checked again" });
      await t.stack.worker.drain();
      expect(online()).toBe(true);
    } finally {
      await t.close();
    }
  });

  it("the admin's retry of the router's given-up rows reconnects the subscriber", async () => {
    const t = await towerAndWorker({ maxAttempts: 1 });
    try {
      const { subscription } = await upgradeGivenUp(t, "Owed Retry");
      const retried = await database.db.transaction((tx) =>
        retryDeadProvisioningInTx(tx, clock.now(), admin, { id: t.routerId, name: "tower" }),
      );
      expect(retried).toBe(1);
      await t.stack.worker.drain();
      expect(t.emulator.find("/ppp/active", subscription.networkUsername)).toBeUndefined();
    } finally {
      await t.close();
    }
  });
});
