import { and, eq, isNotNull } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BillingContext, defaultBillingSettings } from "../src/billing/context.ts";
import { billingJobs } from "../src/billing/jobs.ts";
import { createCustomerWithSubscription } from "../src/billing/subscriptions.ts";
import { systemClock } from "../src/clock.ts";
import { type Database, openDatabase } from "../src/db/client.ts";
import { jobRuns, messageOutbox, paymentIntents } from "../src/db/schema/index.ts";
import { type ScheduledJob, startScheduler } from "../src/jobs/scheduler.ts";
import { createAtSmsSender } from "../src/messaging/sms-client.ts";
import { deliverDueSms } from "../src/messaging/sms-worker.ts";
import { admin, createPlan, uniquePhone } from "./support/billing.ts";
import { createTestDatabase, type TestDatabase } from "./support/db.ts";
import { silent, startUssdWorld, type UssdWorld } from "./ussd/world.ts";

/**
 * Two instances of the app on one PostgreSQL database, as the README says they may run: each with
 * its own connections, HTTP server, M-Pesa and SMS gateway. A subscriber's USSD session goes back
 * and forth between them; the scheduled jobs fire on both; both SMS workers drain the one outbox.
 */

const onServer = process.env.TEST_DATABASE_URL !== undefined;

describe.runIf(onServer)("two instances on one database", () => {
  let database: TestDatabase;
  const instances: { db: Database; ctx: BillingContext; world: UssdWorld }[] = [];

  beforeAll(async () => {
    database = await createTestDatabase();
    for (let i = 0; i < 2; i++) {
      const db = await openDatabase({ databaseUrl: database.url!, dataDir: "" });
      // Real time on both: the two instances' clocks are the same wall clock.
      const ctx: BillingContext = { db: db.db, clock: systemClock, settings: defaultBillingSettings };
      instances.push({ db, ctx, world: await startUssdWorld(ctx, db.db) });
    }
  });
  afterAll(async () => {
    for (const { db, world } of instances) {
      await world.close();
      await db.close();
    }
    await database?.close();
  });

  it("continues one USSD session across instances, and its payment is credited once", async () => {
    const [a, b] = instances as [(typeof instances)[0], (typeof instances)[0]];
    const plan = await createPlan(database.db, { priceCents: 150_000, name: "Fibre 1500" });
    const { customer } = await createCustomerWithSubscription(a.ctx, admin, {
      name: "Achieng Otieno",
      phone: uniquePhone(),
      planId: plan.id,
    });
    const session = `ATUid_two_${customer.id}`;
    const onA = a.world.dial(customer.phone, session);
    const onB = b.world.dial(customer.phone, session);

    expect(await onA("")).toMatch(/^CON .*\n1\. My account/s);
    expect(await onB("2")).toMatch(/^CON .*KES 1,500/s);
    expect(await onA("2*1")).toMatch(/^END .*M-Pesa PIN/s);
    // The prompt was recorded once, whichever instance dispatches and hears the callback.
    await b.world.settle();
    await a.world.settle();
    const intents = await database.db
      .select()
      .from(paymentIntents)
      .where(eq(paymentIntents.customerId, customer.id));
    expect(intents).toMatchObject([{ status: "succeeded", amountCents: 150_000 }]);
    // A new session (the old one read the account before it was paid) sees the service on.
    expect(await b.world.dial(customer.phone)("1")).toMatch(/Status: Active/);
  });

  it("runs each scheduled job once per slot, whichever instance's timer fires first", async () => {
    const slot = new Date("2026-12-04T22:15:00Z");
    const schedulers = instances.map(({ db, ctx }) => {
      const jobs = billingJobs.map(
        (job): ScheduledJob => ({ name: job.name, schedule: job.schedule, run: (tx) => job.run(tx, ctx) }),
      );
      const scheduler = startScheduler(
        { db: db.db, clock: systemClock, logger: silent, timezone: "Africa/Nairobi" },
        jobs,
      );
      scheduler.stop();
      return scheduler;
    });
    // Both fire at once, then again one after the other (a slow instance's timer).
    await Promise.all(schedulers.map((s) => s.runAll(slot)));
    for (const scheduler of schedulers) await scheduler.runAll(slot);

    const ran = await database.db
      .select({ job: jobRuns.job })
      .from(jobRuns)
      .where(and(eq(jobRuns.status, "ok"), isNotNull(jobRuns.slot), eq(jobRuns.slot, slot)));
    expect(ran.map((r) => r.job).sort()).toEqual(billingJobs.map((j) => j.name).sort());
  });

  it("delivers every SMS of the one outbox once, with both workers draining it at once", async () => {
    const now = systemClock.now();
    const phones = Array.from({ length: 40 }, () => uniquePhone());
    await database.db.insert(messageOutbox).values(
      phones.map((phone, i) => ({
        channel: "sms" as const,
        recipient: phone,
        language: "en" as const,
        template: "welcome",
        params: { name: `Subscriber ${i}`, account: `TD9${i}`, plan: "Fibre" },
        nextAttemptAt: now,
        createdAt: now,
      })),
    );
    const received = () => instances.reduce((n, { world }) => n + world.at.inbox.length, 0);
    const before = received();
    await Promise.all(
      instances.map(({ db, world }) =>
        deliverDueSms({
          db: db.db,
          clock: systemClock,
          sender: createAtSmsSender({ username: "kibera", apiKey: "at-test-key", smsUrl: world.at.smsUrl }),
          isp: "Kibera Net",
        }),
      ),
    );
    const rows = await database.db.select().from(messageOutbox).where(eq(messageOutbox.template, "welcome"));
    const ours = rows.filter((r) => phones.includes(r.recipient));
    expect(ours.every((r) => r.status === "done" && r.attempts === 1)).toBe(true);
    expect(received() - before).toBe(phones.length);
  });
});
