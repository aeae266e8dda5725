import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyPayment } from "../../src/billing/payments.ts";
import { changePlan } from "../../src/billing/plan-change.ts";
import { updatePlan } from "../../src/billing/plans.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { resumeSubscription, suspendSubscription } from "../../src/billing/suspend-resume.ts";
import { expireVouchersInTx, sellVoucherInTx } from "../../src/billing/vouchers.ts";
import { DAY, FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { plans, provisioningOutbox, vouchers } from "../../src/db/schema/index.ts";
import type { RouterOsEmulator } from "../../src/network/emulator/server.ts";
import { reconcileRouter } from "../../src/network/reconcile.ts";
import { admin, billingContext, createPlan, job, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { emulatedRouter, networkStack } from "./support.ts";

/**
 * Access is withdrawn in two commands: the entry is disabled or removed, then its session dropped.
 * The connection can break between the two; the subscriber must still end up offline.
 */

let database: Database;
let router: RouterOsEmulator;
let routerId: number;
let stack: ReturnType<typeof networkStack>;
const clock = new FakeClock(new Date());
beforeAll(async () => {
  database = await createTestDatabase();
  ({ emulator: router, routerId } = await emulatedRouter(database.db));
  // The circuit stays closed through the one broken connection: the retry is what is watched here.
  stack = networkStack(database.db, clock, {
    connection: { breaker: { threshold: 100, baseCooldownMs: 1, maxCooldownMs: 1 } },
  });
});
afterAll(async () => {
  await stack.close();
  await router.stop();
  await database.close();
});

const ctx = () => billingContext(database.db, clock).ctx;

async function onlineSubscriber(name: string) {
  const plan = await createPlan(database.db, { priceCents: 100_000 });
  const { customer, subscription, invoice } = await createCustomerWithSubscription(ctx(), admin, {
    name,
    phone: uniquePhone(),
    planId: plan.id,
    routerId,
  });
  await applyPayment(ctx(), admin, {
    customerId: customer.id,
    method: "cash",
    provider: "cash",
    providerRef: `drop-${customer.id}`,
    amountCents: invoice.amountCents,
  });
  await stack.worker.drain();
  router.connectPppoe(subscription.networkUsername);
  return subscription;
}

async function onlineVoucher() {
  const plan = await createPlan(database.db, {
    priceCents: 5_000,
    kind: "hotspot",
    periodUnit: "hours",
    periodCount: 1,
    rateLimit: "1M/2M",
  });
  const sold = await database.db.transaction((tx) =>
    sellVoucherInTx(tx, ctx(), admin, { planId: plan.id, phone: uniquePhone(), language: "sw", routerId }),
  );
  await stack.worker.drain();
  router.connectHotspot(sold.code);
  return sold;
}

/** Breaks the connection once, when the router is first asked for the sessions to drop. */
/**
 * Delivers what is due while the router's connection breaks once, at the first session lookup in
 * `menu` (after the account was changed, before the session was dropped).
 */
async function drainAsConnectionBreaksAt(menu: string) {
  let broken = false;
  router.faults.dropWhen = (command) => {
    if (broken || command.command !== `${menu}/print`) return false;
    broken = true;
    return true;
  };
  await stack.worker.drain();
  expect(broken).toBe(true);
  router.faults.dropWhen = null;
}

/** Moves a subscriber, paid up in cash, to a new plan with a faster `rateLimit`; returns the plan. */
async function upgrade(subscription: { id: number; customerId: number }, rateLimit: string) {
  const fast = await createPlan(database.db, { priceCents: 300_000, rateLimit });
  await applyPayment(ctx(), admin, {
    customerId: subscription.customerId,
    method: "cash",
    provider: "cash",
    providerRef: `upgrade-${subscription.id}`,
    amountCents: 300_000,
  });
  await changePlan(ctx(), admin, { subscriptionId: subscription.id, planId: fast.id });
  return fast;
}

/** Delivers until nothing is left pending (the failed row waits out its back-off on the clock). */
async function deliverUntilSettled(where: ReturnType<typeof eq>) {
  for (let attempt = 0; attempt < 5; attempt++) {
    await stack.worker.drain();
    const rows = await database.db
      .select({ status: provisioningOutbox.status })
      .from(provisioningOutbox)
      .where(where);
    if (rows.every((r) => r.status !== "pending")) return;
    clock.advance(60_000);
  }
  throw new Error("provisioning rows still pending");
}

describe("a subscriber whose access is withdrawn while the router connection breaks", () => {
  it("a suspended subscriber goes offline even when the connection broke after their account was disabled", async () => {
    const subscription = await onlineSubscriber("Wanjiru Kick");
    await suspendSubscription(ctx(), admin, { subscriptionId: subscription.id, reason: "unpaid" });
    await drainAsConnectionBreaksAt("/ppp/active");
    expect(router.find("/ppp/secret", subscription.networkUsername)?.disabled).toBe("true");
    expect(router.find("/ppp/active", subscription.networkUsername)).toBeDefined();

    clock.advance(60_000);
    await deliverUntilSettled(eq(provisioningOutbox.subscriptionId, subscription.id));
    expect(router.find("/ppp/active", subscription.networkUsername)).toBeUndefined();
  });

  it("an expired voucher's user goes offline even when the connection broke after the code was removed", async () => {
    const sold = await onlineVoucher();
    clock.advance(2 * DAY);
    await database.db.transaction((tx) => expireVouchersInTx(tx, ctx(), job));
    await drainAsConnectionBreaksAt("/ip/hotspot/active");
    expect(router.find("/ip/hotspot/user", sold.code)).toBeUndefined();
    expect(router.find("/ip/hotspot/active", sold.code, "user")).toBeDefined();

    clock.advance(60_000);
    await deliverUntilSettled(eq(provisioningOutbox.voucherId, sold.voucherId));
    expect(router.find("/ip/hotspot/active", sold.code, "user")).toBeUndefined();
  });
});

describe("a subscriber whose speed changes while the router connection breaks", () => {
  it("a subscriber moved to a faster plan is reconnected onto it even when the connection broke after their account was changed", async () => {
    const subscription = await onlineSubscriber("Kamau Upgrade");
    const fast = await upgrade(subscription, "10M/20M");
    await drainAsConnectionBreaksAt("/ppp/active");
    expect(router.find("/ppp/secret", subscription.networkUsername)?.profile).toBe(`tandao-${fast.code}`);
    expect(router.find("/ppp/active", subscription.networkUsername)).toBeDefined();

    clock.advance(60_000);
    await deliverUntilSettled(eq(provisioningOutbox.subscriptionId, subscription.id));
    expect(router.find("/ppp/active", subscription.networkUsername)).toBeUndefined();
  });
  it("the reconnection still owed is made when later changes of the subscriber are delivered in one go", async () => {
    const subscription = await onlineSubscriber("Akinyi Upgrade");
    const fast = await upgrade(subscription, "12M/24M");
    await drainAsConnectionBreaksAt("/ppp/active");
    // Suspended and resumed before the retry: only the newest state is delivered.
    await suspendSubscription(ctx(), admin, { subscriptionId: subscription.id, reason: "check" });
    await resumeSubscription(ctx(), admin, { subscriptionId: subscription.id, reason: "checked" });

    clock.advance(60_000);
    await deliverUntilSettled(eq(provisioningOutbox.subscriptionId, subscription.id));
    expect(router.find("/ppp/secret", subscription.networkUsername)).toMatchObject({
      profile: `tandao-${fast.code}`,
      disabled: "false",
    });
    expect(router.find("/ppp/active", subscription.networkUsername)).toBeUndefined();
  });
});

describe("a reconnection still owed under a name the router's admin has since given away", () => {
  it("the admin's own account that took the name stays connected", async () => {
    const subscription = await onlineSubscriber("Njeri Renamed");
    // The router's admin renamed the subscriber's account in Winbox.
    const secret = router.find("/ppp/secret", subscription.networkUsername)!;
    router.update("/ppp/secret", secret[".id"]!, { name: "staff-laptop" });
    const fast = await upgrade(subscription, "14M/28M");
    await drainAsConnectionBreaksAt("/ppp/active");
    expect(router.find("/ppp/secret", subscription.networkUsername)?.profile).toBe(`tandao-${fast.code}`);

    // The freed name goes to an account of the admin's own (no Tandao marker), which dials in.
    router.insert("/ppp/secret", {
      name: "staff-laptop",
      password: "x",
      service: "pppoe",
      profile: "default",
    });
    router.connectPppoe("staff-laptop");
    clock.advance(60_000);
    await deliverUntilSettled(eq(provisioningOutbox.subscriptionId, subscription.id));
    expect(router.find("/ppp/active", "staff-laptop")).toBeDefined();
  });
});

describe("the reconciliation, finding sessions whose drop was lost", () => {
  it("drops the session of a disabled secret and of a removed voucher, reports them in a dry run, and leaves other sessions alone", async () => {
    const subscription = await onlineSubscriber("Otieno Left");
    await suspendSubscription(ctx(), admin, { subscriptionId: subscription.id, reason: "unpaid" });
    await stack.worker.drain();
    const sold = await onlineVoucher();
    clock.advance(2 * DAY);
    await database.db.transaction((tx) => expireVouchersInTx(tx, ctx(), job));
    await stack.worker.drain();
    // The drops were lost: both sessions are still there, their entries disabled or gone.
    router.connectPppoe(subscription.networkUsername);
    router.connectHotspot(sold.code);
    // Not Tandao's: a session with no entry here (authenticated elsewhere, e.g. RADIUS).
    router.connectHotspot("radius-guest");
    router.connectPppoe("radius-office");

    const dry = await reconcileRouter({ db: database.db, clock, pool: stack.pool }, routerId, {
      dryRun: true,
    });
    expect(dry.ok).toBe(true);
    expect(dry.drift).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ menu: "/ppp/active", name: subscription.networkUsername, issue: "extra" }),
        expect.objectContaining({ menu: "/ip/hotspot/active", name: sold.code, issue: "extra" }),
      ]),
    );
    expect(router.find("/ppp/active", subscription.networkUsername)).toBeDefined();

    const run = await reconcileRouter({ db: database.db, clock, pool: stack.pool }, routerId);
    expect(run.ok).toBe(true);
    expect(router.find("/ppp/active", subscription.networkUsername)).toBeUndefined();
    expect(router.find("/ip/hotspot/active", sold.code, "user")).toBeUndefined();
    expect(router.find("/ip/hotspot/active", "radius-guest", "user")).toBeDefined();
    expect(router.find("/ppp/active", "radius-office")).toBeDefined();
    expect(run.drift.map((d) => d.name)).not.toContain("radius-guest");
  });
});

describe("a plan's new speed", () => {
  it("reconnects PPPoE subscribers but leaves hotspot users logged in (they would need their code again)", async () => {
    const subscription = await onlineSubscriber("Speed Pppoe");
    const voucher = await onlineVoucher();
    const [pppoePlan] = await database.db.select().from(plans).where(eq(plans.id, subscription.planId));
    const [sold] = await database.db.select().from(vouchers).where(eq(vouchers.id, voucher.voucherId));
    const [hotspotPlan] = await database.db.select().from(plans).where(eq(plans.id, sold!.planId));
    await updatePlan(ctx(), admin, pppoePlan!.code, { rateLimit: "20M/40M" });
    await updatePlan(ctx(), admin, hotspotPlan!.code, { rateLimit: "4M/8M" });
    await stack.worker.drain();

    expect(router.find("/ppp/active", subscription.networkUsername)).toBeUndefined();
    expect(router.find("/ip/hotspot/active", voucher.code, "user")).toBeDefined();
  });
});

describe("two speed edits of a plan", () => {
  it("reconnect its subscribers once when the first had not reached them yet", async () => {
    const subscription = await onlineSubscriber("Speed Twice");
    const name = subscription.networkUsername;
    const [plan] = await database.db.select().from(plans).where(eq(plans.id, subscription.planId));
    await updatePlan(ctx(), admin, plan!.code, { rateLimit: "20M/40M" });
    // The connection breaks at the first look at the profile: the new speed waits for a retry.
    let broken = false;
    router.faults.dropWhen = (command) => {
      if (broken || command.command !== "/ppp/profile/print") return false;
      broken = true;
      return true;
    };
    await stack.worker.drain();
    router.faults.dropWhen = null;
    expect(broken).toBe(true);
    expect(router.find("/ppp/active", name)).toBeDefined();

    await updatePlan(ctx(), admin, plan!.code, { rateLimit: "25M/50M" });
    const kicksBefore = router.count("/ppp/active/remove");
    for (let attempt = 0; attempt < 5; attempt++) {
      await stack.worker.drain();
      // The subscriber's router dials again at once after a drop.
      if (!router.find("/ppp/active", name)) router.connectPppoe(name);
      clock.advance(60_000);
    }
    expect(router.find("/ppp/profile", `tandao-${plan!.code}`)?.["rate-limit"]).toBe("25M/50M");
    expect(router.count("/ppp/active/remove") - kicksBefore).toBe(1);
  });
});

describe("a suspension when the secret is missing on the router", () => {
  it("drops the session a secret deleted by hand left online", async () => {
    const subscription = await onlineSubscriber("Missing Secret");
    const name = subscription.networkUsername;
    // Deleted on the router by hand (or a backup restored): RouterOS keeps the session up.
    router.delete("/ppp/secret", router.find("/ppp/secret", name)![".id"]!);
    expect(router.find("/ppp/active", name)).toBeDefined();

    await suspendSubscription(ctx(), admin, { subscriptionId: subscription.id, reason: "non-payment" });
    await stack.worker.drain();
    expect(router.find("/ppp/secret", name)?.disabled).toBe("true");
    expect(router.find("/ppp/active", name)).toBeUndefined();
  });
});
