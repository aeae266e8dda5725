import { and, eq } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { suspendOverdue } from "../../src/billing/dunning.ts";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { FakeClock } from "../../src/clock.ts";
import { invoices, provisioningOutbox, subscriptions } from "../../src/db/schema/index.ts";
import { activeSubscriber, createPlan, job, ledgerSum } from "../support/billing.ts";
import {
  ADMIN_GROUP,
  adminWorldForFile,
  auditRows,
  lastMenuIn,
  lastText,
  lastToast,
  OWNER,
} from "./world.ts";

const clock = new FakeClock("2026-04-01T06:00:00Z");
const SUPPORT = 6_300_002;
const OTHER_ADMIN = 6_300_003;
const DAY = 86_400_000;
const world = adminWorldForFile(clock, [
  { id: SUPPORT, role: "support", name: "Sam" },
  { id: OTHER_ADMIN, role: "admin", name: "Ann" },
]);

const subscriptionOf = async (id: number) =>
  (await world.db.select().from(subscriptions).where(eq(subscriptions.id, id)))[0]!;
const outboxRows = async (subscriptionId: number, action: string) =>
  world.db
    .select()
    .from(provisioningOutbox)
    .where(
      and(
        eq(provisioningOutbox.subscriptionId, subscriptionId),
        eq(provisioningOutbox.action, action as "restore"),
      ),
    );

describe("/extend", () => {
  it("asks, and the button gives free days once: paid-until and the next bill move, audited", async () => {
    clock.set("2026-04-01T06:00:00Z");
    const plan = await createPlan(world.db, { priceCents: 100_000 });
    const { customer, subscription } = await activeSubscriber(world.ctx, plan.id, "Extend Me");
    const acct = customer.accountNumber;
    const endBefore = subscription.currentPeriodEnd.getTime();
    const balanceBefore = await ledgerSum(world.db, customer.id);

    await world.say(SUPPORT, `/extend ${acct} 7`);
    expect(lastText(world.fake, SUPPORT)).toMatch(/Your role \(support\) may not use \/extend/);
    for (const bad of ["", `${acct}`, `${acct} 0`, `${acct} 91`, `${acct} two`, `${acct} 1.5`]) {
      await world.say(OWNER, `/extend ${bad}`.trim());
      expect(lastText(world.fake, OWNER)).toMatch(/Usage: \/extend <account> <days>/);
    }
    await world.say(OWNER, "/extend NOSUCH9 3");
    expect(lastText(world.fake, OWNER)).toBe("No account NOSUCH9. Try /find.");
    expect((await subscriptionOf(subscription.id)).currentPeriodEnd.getTime()).toBe(endBefore);

    await world.say(OWNER, `/extend ${acct} 7 outage on Kibera-1`, ADMIN_GROUP);
    const question = lastMenuIn(world.fake, ADMIN_GROUP);
    expect(String(question.payload.text)).toMatch(
      /Extend Me: paid until 1 May 2026 \(active\)\. Give 7 free days/,
    );
    await world.press(OTHER_ADMIN, "Confirm", ADMIN_GROUP, question);
    expect(lastToast(world.fake)).toBe("Only the admin who asked can answer this.");
    expect((await subscriptionOf(subscription.id)).currentPeriodEnd.getTime()).toBe(endBefore);

    await Promise.all([
      world.press(OWNER, "Confirm", ADMIN_GROUP, question),
      world.press(OWNER, "Confirm", ADMIN_GROUP, question),
    ]);
    await world.press(OWNER, "Confirm", ADMIN_GROUP, question);
    expect(lastToast(world.fake)).toBe("Already done.");
    expect(lastText(world.fake, ADMIN_GROUP)).toBe(`✅ Extended ${acct} by 7 days: paid until 8 May 2026.`);
    expect((await subscriptionOf(subscription.id)).currentPeriodEnd.getTime()).toBe(endBefore + 7 * DAY);
    expect(await ledgerSum(world.db, customer.id)).toBe(balanceBefore);
    const extended = await auditRows(world.db, "subscription.extended", `tg:${OWNER}`);
    expect(extended.map((r) => [r.entityId, r.reason, (r.details as { days: number }).days])).toEqual([
      [String(subscription.id), "outage on Kibera-1", 7],
    ]);
  });

  it("brings back a subscription suspended for non-payment when its bill is not due any more", async () => {
    clock.set("2026-04-01T06:00:00Z");
    const plan = await createPlan(world.db, { priceCents: 100_000 });
    const { customer, subscription } = await activeSubscriber(world.ctx, plan.id, "Late Payer");
    clock.set("2026-04-28T06:00:00Z");
    await issueRecurringInvoices(world.ctx, job);
    clock.set("2026-05-03T06:00:00Z");
    await suspendOverdue(world.ctx, job);
    let state = await subscriptionOf(subscription.id);
    expect([state.status, state.suspendedReason]).toEqual(["suspended", "dunning"]);
    const restoresBefore = (await outboxRows(subscription.id, "restore")).length;

    // One day does not reach past today: still suspended, and said so.
    await world.say(OWNER, `/extend ${customer.accountNumber} 1`);
    await world.press(OWNER, "Confirm");
    expect(lastText(world.fake, OWNER)).toMatch(
      /paid until 2 May 2026\. Still suspended \(dunning\): an earlier bill is still overdue/,
    );
    await world.say(OWNER, `/extend ${customer.accountNumber} 6`);
    await world.press(OWNER, "Confirm");
    expect(lastText(world.fake, OWNER)).toMatch(/by 6 days: paid until 8 May 2026\. Service restored/);
    state = await subscriptionOf(subscription.id);
    expect([state.status, state.suspendedReason]).toEqual(["active", null]);
    expect((await outboxRows(subscription.id, "restore")).length).toBe(restoresBefore + 1);
    const [next] = await world.db
      .select()
      .from(invoices)
      .where(and(eq(invoices.subscriptionId, subscription.id), eq(invoices.status, "open")));
    expect(next!.dueAt.toISOString()).toBe(state.currentPeriodEnd.toISOString());
    expect((await auditRows(world.db, "subscription.restored", `tg:${OWNER}`)).length).toBeGreaterThan(0);
  });
});

describe("/plan", () => {
  it("quotes, and the button changes the plan once through the core", async () => {
    clock.set("2026-04-01T06:00:00Z");
    const small = await createPlan(world.db, { priceCents: 100_000, name: "Small" });
    const big = await createPlan(world.db, { priceCents: 200_000, name: "Big" });
    const hotspot = await createPlan(world.db, { priceCents: 5_000, name: "Hot", kind: "hotspot" });
    const { customer, subscription } = await activeSubscriber(world.ctx, small.id, "Plan Mover");
    const acct = customer.accountNumber;
    clock.set("2026-04-16T06:00:00Z");

    await world.say(SUPPORT, `/plan ${acct} ${big.code}`);
    expect(lastText(world.fake, SUPPORT)).toMatch(/may not use \/plan/);
    await world.say(OWNER, `/plan ${acct}`);
    expect(lastText(world.fake, OWNER)).toMatch(/Say the plan's code.*\nUsage: \/plan/);
    await world.say(OWNER, `/plan ${acct} nosuch`);
    expect(lastText(world.fake, OWNER)).toBe("No plan nosuch. /plans lists them.");
    await world.say(OWNER, `/plan ${acct} ${small.code}`);
    expect(lastText(world.fake, OWNER)).toBe(`${acct} is already on ${small.code}.`);
    await world.say(OWNER, `/plan ${acct} ${hotspot.code}`);
    expect(lastText(world.fake, OWNER)).toBe(`${acct}: You can only move to a plan of the same kind.`);

    await world.say(OWNER, `/plan ${acct} ${big.code}`);
    const question = lastMenuIn(world.fake, OWNER);
    expect(String(question.payload.text)).toMatch(
      /Plan Mover: moves to Big \(KES 2,000\) now; KES [\d,]+ charged for the rest of the period\. Go ahead\?/,
    );
    expect((await subscriptionOf(subscription.id)).planId).toBe(small.id);
    await world.press(OWNER, "Confirm");
    await world.press(OWNER, "Confirm", OWNER, question);
    expect(lastToast(world.fake)).toBe("Already done.");
    expect(lastText(world.fake, OWNER)).toMatch(
      new RegExp(`✅ ${acct}: moved to Big \\(KES 2,000\\) now; KES [\\d,]+ charged`),
    );
    expect((await subscriptionOf(subscription.id)).planId).toBe(big.id);
    expect(await outboxRows(subscription.id, "change_plan")).toHaveLength(1);
    const changed = await auditRows(world.db, "subscription.plan_changed", `tg:${OWNER}`);
    expect(changed.map((r) => r.entityId)).toEqual([String(subscription.id)]);
    const proration = await world.db
      .select()
      .from(invoices)
      .where(and(eq(invoices.subscriptionId, subscription.id), eq(invoices.kind, "proration")));
    expect(proration).toHaveLength(1);
  });
});

describe("/plan confirmed after a price changed", () => {
  it("changes nothing, says so, and a new /plan quotes and charges the new price", async () => {
    clock.set("2026-05-01T06:00:00Z");
    const small = await createPlan(world.db, { priceCents: 100_000, name: "Small" });
    const big = await createPlan(world.db, { priceCents: 200_000, name: "Big" });
    const { customer, subscription } = await activeSubscriber(world.ctx, small.id, "Price Watcher");
    const acct = customer.accountNumber;
    clock.set("2026-05-16T06:00:00Z");

    await world.say(OWNER, `/plan ${acct} ${big.code}`);
    const question = lastMenuIn(world.fake, OWNER);
    expect(String(question.payload.text)).toMatch(/moves to Big \(KES 2,000\) now/);
    // Another admin reprices the plan before the owner confirms.
    await world.say(OTHER_ADMIN, `/plan_edit ${big.code} price 20000`);
    await world.press(OWNER, "Confirm", OWNER, question);
    expect(lastToast(world.fake)).toBe(
      `${acct}'s plan or a price changed since you asked, so nothing was changed. Send /plan again for a new quote.`,
    );
    expect((await subscriptionOf(subscription.id)).planId).toBe(small.id);
    const charges = () =>
      world.db
        .select()
        .from(invoices)
        .where(and(eq(invoices.subscriptionId, subscription.id), eq(invoices.kind, "proration")));
    expect(await charges()).toEqual([]);

    await world.say(OWNER, `/plan ${acct} ${big.code}`);
    expect(String(lastMenuIn(world.fake, OWNER).payload.text)).toMatch(/moves to Big \(KES 20,000\) now/);
    await world.press(OWNER, "Confirm");
    expect((await subscriptionOf(subscription.id)).planId).toBe(big.id);
    expect(await charges()).toHaveLength(1);
  });
});

describe("/cancel", () => {
  it("asks, and the button cancels once: the router account is removed, audited", async () => {
    clock.set("2026-04-01T06:00:00Z");
    const plan = await createPlan(world.db, { priceCents: 100_000 });
    const { customer, subscription } = await activeSubscriber(world.ctx, plan.id, "Leaving Soon");
    const acct = customer.accountNumber;

    await world.say(SUPPORT, `/cancel ${acct}`);
    expect(lastText(world.fake, SUPPORT)).toMatch(/may not use \/cancel/);
    await world.say(OWNER, "/cancel");
    expect(lastText(world.fake, OWNER)).toMatch(/Say the account number.*\nUsage: \/cancel/);
    await world.say(OWNER, `/cancel ${acct} moving away`);
    const question = lastMenuIn(world.fake, OWNER);
    expect(String(question.payload.text)).toMatch(
      /Leaving Soon: cancel the subscription \(active\)\?.*cannot be undone/,
    );
    await world.press(OWNER, "Cancel", OWNER, question);
    expect(lastToast(world.fake)).toBe("Cancelled.");
    expect((await subscriptionOf(subscription.id)).status).toBe("active");

    await world.say(OWNER, `/cancel ${acct} moving away`);
    const second = lastMenuIn(world.fake, OWNER);
    await Promise.all([
      world.press(OWNER, "Confirm", OWNER, second),
      world.press(OWNER, "Confirm", OWNER, second),
    ]);
    expect(lastText(world.fake, OWNER)).toBe(`✅ Cancelled ${acct}: the router account is being removed.`);
    expect((await subscriptionOf(subscription.id)).status).toBe("cancelled");
    expect(await outboxRows(subscription.id, "remove_account")).toHaveLength(1);
    const cancelled = await auditRows(world.db, "subscription.cancelled", `tg:${OWNER}`);
    expect(cancelled.map((r) => [r.entityId, r.reason])).toEqual([[String(subscription.id), "moving away"]]);

    await world.say(OWNER, `/cancel ${acct}`);
    expect(lastText(world.fake, OWNER)).toBe(`${acct} has no subscription.`);
  });

  it("a downgrade in the grace days after the period end is said to come with the next period, not on a past date", async () => {
    clock.set("2026-05-01T06:00:00Z");
    const big = await createPlan(world.db, { priceCents: 300_000, name: "Grace Big" });
    const small = await createPlan(world.db, { priceCents: 100_000, name: "Grace Small" });
    const { customer, subscription } = await activeSubscriber(world.ctx, big.id, "Grace Mover");
    const acct = customer.accountNumber;
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - 2 * DAY));
    await issueRecurringInvoices(world.ctx, job);
    clock.set(new Date(subscription.currentPeriodEnd.getTime() + DAY / 2));

    await world.say(OWNER, `/plan ${acct} ${small.code}`);
    const question = String(lastMenuIn(world.fake, OWNER).payload.text);
    expect(question).toMatch(
      /Grace Mover: moves to Grace Small \(KES 1,000\) with the next period, once its bill is paid \(the period ended [^)]+\); nothing charged now\. Go ahead\?/,
    );
    expect(question).not.toContain("(the period end)");
    await world.press(OWNER, "Confirm");
    expect(lastText(world.fake, OWNER)).toMatch(
      new RegExp(
        `✅ ${acct}: will move to Grace Small \\(KES 1,000\\) with the next period, once its bill is paid`,
      ),
    );
    expect(await subscriptionOf(subscription.id)).toMatchObject({ planId: big.id, nextPlanId: small.id });
  });
});
