import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { cancelSubscription } from "../../src/billing/cancel-subscription.ts";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { DAY, FakeClock } from "../../src/clock.ts";
import { messageOutbox, subscriptions } from "../../src/db/schema/index.ts";
import { activeSubscriber, admin, createPlan, job, ledgerSum } from "../support/billing.ts";
import { adminWorldForFile, auditRows, lastMenuIn, lastText, lastToast, OWNER } from "./world.ts";

/** `/resubscribe`: a customer whose subscription ended comes back on the same account. */

const clock = new FakeClock("2026-05-01T08:00:00Z");
const SUPPORT = 6_900_102;
const world = adminWorldForFile(clock, [{ id: SUPPORT, role: "support", name: "Sam" }]);

const subscriptionsOf = (customerId: number) =>
  world.db
    .select()
    .from(subscriptions)
    .where(eq(subscriptions.customerId, customerId))
    .orderBy(subscriptions.id);

describe("/resubscribe", () => {
  it("starts a new subscription on the old account, its first period billed, its router login new", async () => {
    const plan = await createPlan(world.db, { priceCents: 100_000 });
    const { customer, subscription } = await activeSubscriber(world.ctx, plan.id, "Came Back");
    const acct = customer.accountNumber;

    await world.say(OWNER, `/resubscribe ${acct} ${plan.code}`);
    expect(lastText(world.fake, OWNER)).toMatch(
      /already has a subscription \(active\): \/plan changes its plan/,
    );
    // Cancelled at the very end of its period: nothing left to credit back.
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - 1));
    await cancelSubscription(world.ctx, admin, { subscriptionId: subscription.id, reason: "moved away" });
    const balance = await ledgerSum(world.db, customer.id);

    await world.say(SUPPORT, `/resubscribe ${acct} ${plan.code}`);
    expect(lastText(world.fake, SUPPORT)).toMatch(/Your role \(support\) may not use \/resubscribe/);
    for (const [typed, answer] of [
      ["/resubscribe", /Say the account number/],
      [`/resubscribe ${acct}`, /Say the plan's code/],
      [`/resubscribe ${acct} nosuch`, /No plan nosuch on sale/],
      [`/resubscribe ${acct} ${plan.code} Nowhere`, /No router "Nowhere"/],
    ] as const) {
      await world.say(OWNER, typed);
      expect(lastText(world.fake, OWNER)).toMatch(answer);
    }

    clock.advance(30 * DAY);
    await world.say(OWNER, `/resubscribe ${acct} ${plan.code}`);
    expect(String(lastMenuIn(world.fake, OWNER).payload.text)).toMatch(
      new RegExp(
        `^Came Back \\(no subscription, balance .*\\): start a new ${plan.code} subscription for ${acct}, no router yet\\? The first period, KES 1,000, is billed now\\.`,
      ),
    );
    await world.press(OWNER, "Confirm");
    const login = `${acct.toLowerCase()}-2`;
    expect(lastText(world.fake, OWNER)).toBe(
      `✅ ${acct} is subscribed again to ${plan.code} (router login ${login}): KES 1,000 to pay for the first period (service starts with it).`,
    );
    const [old, fresh] = await subscriptionsOf(customer.id);
    expect(old!.status).toBe("cancelled");
    expect(fresh).toMatchObject({ status: "pending", networkUsername: login, planId: plan.id });
    expect(await ledgerSum(world.db, customer.id)).toBe(balance - 100_000);
    const welcome = await world.db
      .select()
      .from(messageOutbox)
      .where(and(eq(messageOutbox.recipient, customer.phone), eq(messageOutbox.template, "welcome")));
    expect(welcome).toHaveLength(2);
    expect(await auditRows(world.db, "customer.resubscribed", `tg:${OWNER}`)).toMatchObject([
      { entityId: String(customer.id), details: { subscriptionId: fresh!.id, planId: plan.id } },
    ]);
  });

  it("an older bill still owed is paid first: the admin is told the whole amount", async () => {
    clock.set("2026-09-01T08:00:00Z");
    const plan = await createPlan(world.db, { priceCents: 80_000 });
    const { customer, subscription } = await activeSubscriber(world.ctx, plan.id, "Left Owing");
    // The next period is billed and served for a few days unpaid, then the subscription ends.
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - DAY));
    await issueRecurringInvoices(world.ctx, job);
    clock.set(new Date(subscription.currentPeriodEnd.getTime() + 3 * DAY));
    await cancelSubscription(world.ctx, admin, { subscriptionId: subscription.id, reason: "stopped paying" });
    expect(await ledgerSum(world.db, customer.id)).toBe(-80_000);

    await world.say(OWNER, `/resubscribe ${customer.accountNumber} ${plan.code}`);
    await world.press(OWNER, "Confirm");
    expect(lastText(world.fake, OWNER)).toMatch(
      /: KES 1,600 to pay, older bills first, then the first period \(service starts once all is paid\)\.$/,
    );
    const [, fresh] = await subscriptionsOf(customer.id);
    expect(fresh!.status).toBe("pending");
  });

  it("credit left on the account pays the first period: service starts at once", async () => {
    clock.set("2026-08-01T08:00:00Z");
    const plan = await createPlan(world.db, { priceCents: 60_000 });
    const { customer, subscription } = await activeSubscriber(world.ctx, plan.id, "Left Credit");
    // Cancelled the day it started: the unserved period is credited back.
    await cancelSubscription(world.ctx, admin, { subscriptionId: subscription.id, reason: "changed mind" });
    expect(await ledgerSum(world.db, customer.id)).toBeGreaterThanOrEqual(60_000);
    await world.say(OWNER, `/resubscribe ${customer.accountNumber} ${plan.code}`);
    await world.press(OWNER, "Confirm");
    expect(lastText(world.fake, OWNER)).toMatch(
      /the first period is paid from the account's credit: service starts now\.$/,
    );
    const [, fresh] = await subscriptionsOf(customer.id);
    expect(fresh!.status).toBe("active");
  });

  it("bills nothing when the plan's price changed since the question; asked again, it bills the new one", async () => {
    const plan = await createPlan(world.db, { priceCents: 100_000 });
    const { customer, subscription } = await activeSubscriber(world.ctx, plan.id, "Price Changed");
    const acct = customer.accountNumber;
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - 1));
    await cancelSubscription(world.ctx, admin, { subscriptionId: subscription.id, reason: "moved away" });
    const balance = await ledgerSum(world.db, customer.id);

    await world.say(OWNER, `/resubscribe ${acct} ${plan.code}`);
    const question = lastMenuIn(world.fake, OWNER);
    expect(String(question.payload.text)).toMatch(/The first period, KES 1,000, is billed now\./);
    await world.say(OWNER, `/plan_edit ${plan.code} price 1500`);
    await world.press(OWNER, "Confirm", OWNER, question);
    expect(lastToast(world.fake)).toBe(
      `The price of ${plan.code} changed since you asked (now KES 1,500), so nothing was done. Send /resubscribe again.`,
    );
    expect(await subscriptionsOf(customer.id)).toHaveLength(1);
    expect(await ledgerSum(world.db, customer.id)).toBe(balance);

    await world.say(OWNER, `/resubscribe ${acct} ${plan.code}`);
    expect(String(lastMenuIn(world.fake, OWNER).payload.text)).toMatch(
      /The first period, KES 1,500, is billed now\./,
    );
    await world.press(OWNER, "Confirm");
    expect(await subscriptionsOf(customer.id)).toHaveLength(2);
    expect(await ledgerSum(world.db, customer.id)).toBe(balance - 150_000);
  });
});
