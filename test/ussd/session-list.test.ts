import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { paymentIntents, plans, subscriptions } from "../../src/db/schema/index.ts";
import { createMenuServices } from "../../src/menu/services.ts";
import { SessionCache } from "../../src/menu/session-cache.ts";
import { createUssdRoutes } from "../../src/ussd/routes.ts";
import { activeSubscriber, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { settings, silent } from "./world.ts";

/**
 * A USSD session lasts up to 180 s; what it was shown is kept in a SessionCache for 60 s (and only in
 * the process that read it). A confirmation must act on what the confirm screen showed, not on what
 * the replayed inputs mean once the list is read afresh.
 */

let database: Database;
const clock = new FakeClock("2026-06-01T06:00:00Z");

/** One USSD session of `phone` posted to `routes` as Africa's Talking would; returns the answer. */
const dialler =
  (routes: ReturnType<typeof createUssdRoutes>, sessionId: string, phone: string) => async (text: string) => {
    const body = new URLSearchParams({ sessionId, phoneNumber: phone, text, serviceCode: "*384*1#" });
    return (await routes.request("/", { method: "POST", body })).text();
  };
let ctx: ReturnType<typeof billingContext>["ctx"];

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
});
afterAll(async () => {
  await database.close();
});

describe("a list that changes while a session reads it", () => {
  it("does not sell another voucher, at another price, than the one confirmed", async () => {
    let now = 1_000_000;
    const routes = createUssdRoutes({
      db: database.db,
      services: createMenuServices(ctx, { planCacheMs: 0 }),
      settings,
      logger: silent,
      cache: new SessionCache(60_000, 20_000, () => now),
    });
    const hour = await createPlan(database.db, {
      name: "Hour Pass",
      kind: "hotspot",
      priceCents: 2_000,
      periodUnit: "hours",
    });
    await createPlan(database.db, {
      name: "Week Pass",
      kind: "hotspot",
      priceCents: 30_000,
      periodUnit: "days",
      periodCount: 7,
    });
    const phone = uniquePhone();
    const sessionId = `ATUid_list_${process.pid}`;
    const ussd = dialler(routes, sessionId, phone);

    expect(await ussd("1")).toMatch(/\n1\. Hour Pass: KES 20\n2\. Week Pass: KES 300/);
    const confirm = await ussd("1*1");
    expect(confirm).toMatch(/^CON Hour Pass: KES 20\nBuy this voucher with M-Pesa/);

    // While the subscriber reads the confirmation (a session may last 180 s), the admin takes the hour
    // pass off sale; the subscriber presses 1 a minute later.
    await database.db.update(plans).set({ active: false }).where(eq(plans.id, hour.id));
    now += 61_000;
    const answer = await ussd("1*1*1");

    const intents = await database.db.select().from(paymentIntents).where(eq(paymentIntents.phone, phone));
    // They confirmed "Hour Pass: KES 20": no prompt for anything else may go out.
    for (const intent of intents) expect(intent).toMatchObject({ planId: hour.id, amountCents: 2_000 });
    expect(answer).not.toMatch(/KES 300/);
    // The hour pass is off sale: they are told so, not that a payment failed.
    expect(answer).toMatch(/^END Sorry, that plan or package is no longer offered\./);
  });

  it("does not change to a plan at another price than the one confirmed", async () => {
    let now = 2_000_000;
    const routes = createUssdRoutes({
      db: database.db,
      services: createMenuServices(ctx, { planCacheMs: 0 }),
      settings,
      logger: silent,
      cache: new SessionCache(60_000, 20_000, () => now),
    });
    const basic = await createPlan(database.db, { name: "Basic 5", priceCents: 100_000 });
    const fast = await createPlan(database.db, { name: "Fast 50", priceCents: 300_000 });
    const { customer, subscription } = await activeSubscriber(ctx, basic.id);
    const sessionId = `ATUid_price_${process.pid}`;
    const ussd = dialler(routes, sessionId, customer.phone);
    const item = /\n(\d+)\. Fast 50: KES 3,000/.exec(await ussd("4"))?.[1];
    expect(item).toBeTruthy();
    expect(await ussd(`4*${item}`)).toMatch(/^CON Fast 50: KES 3,000/);

    // The admin raises the price while the subscriber reads the quote; they press 1 a minute later.
    await database.db.update(plans).set({ priceCents: 350_000 }).where(eq(plans.id, fast.id));
    now += 61_000;
    const answer = await ussd(`4*${item}*1`);

    expect(answer).toMatch(/^END The plans on offer have changed\. Nothing was done\./);
    const intents = await database.db
      .select()
      .from(paymentIntents)
      .where(eq(paymentIntents.phone, customer.phone));
    expect(intents).toEqual([]);
    const [after] = await database.db
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.id, subscription.id));
    expect(after).toMatchObject({ planId: basic.id, nextPlanId: null });
  });

  it("tells a subscriber whose chosen plan was retired meanwhile that it is no longer offered, not that a payment failed", async () => {
    const routes = createUssdRoutes({
      db: database.db,
      services: createMenuServices(ctx, { planCacheMs: 0 }),
      settings,
      logger: silent,
    });
    const basic = await createPlan(database.db, { name: "Basic 3", priceCents: 100_000 });
    const fast = await createPlan(database.db, { name: "Fast 30", priceCents: 300_000 });
    const { customer } = await activeSubscriber(ctx, basic.id);
    const sessionId = `ATUid_retired_${process.pid}`;
    const ussd = dialler(routes, sessionId, customer.phone);
    const list = await ussd("4");
    const item = /\n(\d+)\. Fast 30: /.exec(list)?.[1];
    expect(item).toBeTruthy();
    await database.db.update(plans).set({ active: false }).where(eq(plans.id, fast.id));
    const answer = await ussd(`4*${item}`);
    // Nothing was asked of M-Pesa: "the payment request failed, try again later" is untrue and misleads.
    expect(answer).not.toMatch(/payment request failed/);
    expect(answer).toMatch(/^END Sorry, that plan or package is no longer offered\. Nothing was charged\./);
  });
});
