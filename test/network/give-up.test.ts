import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
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
