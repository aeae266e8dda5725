import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { suspendOverdue } from "../../src/billing/dunning.ts";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { changePlan } from "../../src/billing/plan-change.ts";
import { updatePlan } from "../../src/billing/plans.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { resumeSubscription, suspendSubscription } from "../../src/billing/suspend-resume.ts";
import { sellVoucherInTx } from "../../src/billing/vouchers.ts";
import { DAY, FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { messageOutbox, provisioningOutbox, routers, subscriptions } from "../../src/db/schema/index.ts";
import type { RouterOsEmulator } from "../../src/network/emulator/server.ts";
import { admin, billingContext, createPlan, job, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { emulatedRouter, networkStack, waitFor } from "./support.ts";

let database: Database;
let router: RouterOsEmulator;
let routerId: number;
let stack: ReturnType<typeof networkStack>;
const clock = new FakeClock(new Date());
beforeAll(async () => {
  database = await createTestDatabase();
  ({ emulator: router, routerId } = await emulatedRouter(database.db));
  stack = networkStack(database.db, clock, { worker: { maxAttempts: 2, adminPhone: "+254700000999" } });
});
afterAll(async () => {
  await stack.close();
  await router.stop();
  await database.close();
});

const ctx = () => billingContext(database.db, clock).ctx;

async function signUp(planId: number, name = "Achieng Otieno") {
  return createCustomerWithSubscription(ctx(), admin, { name, phone: uniquePhone(), planId, routerId });
}

async function pay(customerId: number, amountCents: number) {
  return applyPayment(ctx(), admin, {
    customerId,
    method: "mpesa_c2b",
    provider: "mpesa",
    providerRef: `R${Math.random().toString(36).slice(2, 12).toUpperCase()}`,
    amountCents,
  });
}

const secret = (name: string) => router.find("/ppp/secret", name);

describe("provisioning PPPoE subscribers through the real client and the emulated router", () => {
  it("a new subscriber's secret appears (disabled until paid) with the plan's profile; payment enables it", async () => {
    const plan = await createPlan(database.db, { priceCents: 150_000, rateLimit: "3M/6M" });
    const { customer, subscription, invoice } = await signUp(plan.id);
    await stack.worker.drain();
    expect(secret(subscription.networkUsername)).toMatchObject({
      password: subscription.networkPassword,
      service: "pppoe",
      profile: `tandao-${plan.code}`,
      disabled: "true",
      comment: `tandao:sub:${subscription.id}`,
    });
    expect(router.find("/ppp/profile", `tandao-${plan.code}`)).toMatchObject({
      "rate-limit": "3M/6M",
      comment: `tandao:plan:${plan.id}`,
    });
    await pay(customer.id, invoice.amountCents);
    await stack.worker.drain();
    expect(secret(subscription.networkUsername)?.disabled).toBe("false");
    const [row] = await database.db.select().from(routers).where(eq(routers.id, routerId));
    expect(row?.lastContactAt).not.toBeNull();
  });

  it("an overdue subscriber is disabled and their session dropped; paying brings them back", async () => {
    const plan = await createPlan(database.db, { priceCents: 200_000 });
    const { customer, subscription, invoice } = await signUp(plan.id, "Kamau Njoroge");
    await pay(customer.id, invoice.amountCents);
    await stack.worker.drain();
    router.connectPppoe(subscription.networkUsername);
    const kicksBefore = router.count("/ppp/active/remove");

    const saved = clock.now();
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - DAY));
    await issueRecurringInvoices(ctx(), job);
    clock.set(new Date(subscription.currentPeriodEnd.getTime() + 3 * DAY));
    const { suspended } = await suspendOverdue(ctx(), job);
    expect(suspended).toBeGreaterThanOrEqual(1);
    await stack.worker.drain();
    expect(secret(subscription.networkUsername)?.disabled).toBe("true");
    expect(router.find("/ppp/active", subscription.networkUsername)).toBeUndefined();
    expect(router.count("/ppp/active/remove") - kicksBefore).toBe(1);

    const result = await pay(customer.id, 200_000);
    expect(result.restoredSubscriptionIds).toContain(subscription.id);
    await stack.worker.drain();
    expect(secret(subscription.networkUsername)?.disabled).toBe("false");
    clock.set(saved);
  });

  it("a plan change moves the secret to the new profile and drops the session once", async () => {
    const basic = await createPlan(database.db, { priceCents: 100_000, rateLimit: "2M/4M" });
    const fast = await createPlan(database.db, { priceCents: 300_000, rateLimit: "10M/20M" });
    const { customer, subscription, invoice } = await signUp(basic.id, "Wafula Chebet");
    await pay(customer.id, invoice.amountCents);
    await stack.worker.drain();
    router.connectPppoe(subscription.networkUsername);
    const kicksBefore = router.count("/ppp/active/remove");
    await pay(customer.id, 300_000);
    await changePlan(ctx(), admin, { subscriptionId: subscription.id, planId: fast.id });
    await stack.worker.drain();
    expect(secret(subscription.networkUsername)?.profile).toBe(`tandao-${fast.code}`);
    expect(router.find("/ppp/profile", `tandao-${fast.code}`)?.["rate-limit"]).toBe("10M/20M");
    expect(router.count("/ppp/active/remove") - kicksBefore).toBe(1);
    expect(router.find("/ppp/active", subscription.networkUsername)).toBeUndefined();
  });

  it("a plan's new speed reaches its subscribers who are online: each reconnects once onto it; others stay connected", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000, rateLimit: "2M/4M" });
    const other = await createPlan(database.db, { priceCents: 100_000, rateLimit: "2M/4M" });
    const onPlan = await signUp(plan.id, "Speed Onplan");
    const onOther = await signUp(other.id, "Speed Other");
    for (const { customer, invoice } of [onPlan, onOther]) await pay(customer.id, invoice.amountCents);
    await stack.worker.drain();
    const name = onPlan.subscription.networkUsername;
    router.connectPppoe(name);
    router.connectPppoe(onOther.subscription.networkUsername);
    const kicksBefore = router.count("/ppp/active/remove");

    // A new speed, then (before the worker runs) a data cap: the later edit does not lose the first.
    await updatePlan(ctx(), admin, plan.code, { rateLimit: "10M/20M" });
    await updatePlan(ctx(), admin, plan.code, { dataCapBytes: 5_000_000_000 });
    await stack.worker.drain();
    expect(router.find("/ppp/profile", `tandao-${plan.code}`)?.["rate-limit"]).toBe("10M/20M");
    expect(router.find("/ppp/active", name)).toBeUndefined();
    expect(router.count("/ppp/active/remove") - kicksBefore).toBe(1);
    expect(router.find("/ppp/active", onOther.subscription.networkUsername)).toBeDefined();

    // An edit that leaves the speed alone reconnects nobody.
    router.connectPppoe(name);
    await updatePlan(ctx(), admin, plan.code, { dataCapBytes: null });
    await stack.worker.drain();
    expect(router.find("/ppp/active", name)).toBeDefined();
  });

  it("suspend then restore within a second: only the final state is applied, the older row is superseded", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { customer, subscription, invoice } = await signUp(plan.id, "Nduta Mwangi");
    await pay(customer.id, invoice.amountCents);
    await stack.worker.drain();
    const setsBefore = router.count("/ppp/secret/set");
    await suspendSubscription(ctx(), admin, {
      subscriptionId: subscription.id,
      reason: "router maintenance test",
    });
    await resumeSubscription(ctx(), admin, { subscriptionId: subscription.id, reason: "done" });
    await stack.worker.drain();
    expect(secret(subscription.networkUsername)?.disabled).toBe("false");
    expect(router.count("/ppp/secret/set") - setsBefore).toBe(0);
    const rows = await database.db
      .select({ action: provisioningOutbox.action, status: provisioningOutbox.status })
      .from(provisioningOutbox)
      .where(and(eq(provisioningOutbox.subscriptionId, subscription.id)))
      .orderBy(provisioningOutbox.id);
    expect(rows.slice(-2)).toEqual([
      { action: "suspend", status: "superseded" },
      { action: "restore", status: "done" },
    ]);
  });

  it("a voucher sale creates a hotspot user with the plan's limits", async () => {
    const plan = await createPlan(database.db, {
      priceCents: 5_000,
      kind: "hotspot",
      periodUnit: "days",
      rateLimit: "1M/2M",
      timeLimitSeconds: 3 * 3600,
      dataCapBytes: 2_000_000_000,
    });
    const sold = await database.db.transaction((tx) =>
      sellVoucherInTx(tx, ctx(), admin, { planId: plan.id, phone: uniquePhone(), language: "sw", routerId }),
    );
    await stack.worker.drain();
    expect(router.find("/ip/hotspot/user", sold.code)).toMatchObject({
      password: sold.code,
      profile: `tandao-${plan.code}`,
      "limit-uptime": "3h",
      "limit-bytes-total": "2000000000",
      comment: `tandao:voucher:${sold.voucherId}`,
    });
    expect(router.find("/ip/hotspot/user/profile", `tandao-${plan.code}`)?.["rate-limit"]).toBe("1M/2M");
  });

  it("a secret the admin already created by hand is never taken over: the row dies and the admin is alerted", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    router.insert("/ppp/secret", { name: "handmade", password: "theirs", profile: "default" });
    const { subscription } = await createCustomerWithSubscription(ctx(), admin, {
      name: "Clash Case",
      phone: uniquePhone(),
      planId: plan.id,
      routerId,
      networkUsername: "handmade",
    });
    for (let i = 0; i < 3; i++) {
      await stack.worker.drain();
      clock.advance(60_000);
    }
    expect(secret("handmade")).toMatchObject({ password: "theirs", profile: "default" });
    expect(secret("handmade")?.comment).toBeUndefined();
    const [row] = await database.db
      .select()
      .from(provisioningOutbox)
      .where(eq(provisioningOutbox.subscriptionId, subscription.id));
    expect(row).toMatchObject({ status: "dead", attempts: 2 });
    expect(row?.lastError).toMatch(/without a Tandao marker/);
    const alerts = await database.db
      .select()
      .from(messageOutbox)
      .where(and(eq(messageOutbox.template, "admin_alert"), eq(messageOutbox.recipient, "+254700000999")));
    expect(alerts).toHaveLength(1);
    expect(String(alerts[0]?.params.text)).toContain(`subscription ${subscription.id}`);
  });

  it("a router down for longer than every retry of a row still gets the row when it is back", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    await router.stop();
    const { subscription } = await signUp(plan.id, "Long Outage");
    for (let i = 0; i < 12; i++) {
      clock.advance(10 * 60_000);
      await stack.worker.drain();
    }
    const [row] = await database.db
      .select()
      .from(provisioningOutbox)
      .where(eq(provisioningOutbox.subscriptionId, subscription.id));
    expect(row).toMatchObject({ status: "pending", attempts: 0 });
    await router.start();
    await waitFor(async () => {
      clock.advance(60_000);
      await stack.worker.drain();
      return secret(subscription.networkUsername) !== undefined;
    });
  });

  it("an unreachable router gets its error recorded and the row retried later, not lost", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    await router.stop();
    const { subscription } = await signUp(plan.id, "Offline Case");
    await stack.worker.drain();
    const [row] = await database.db
      .select()
      .from(provisioningOutbox)
      .where(eq(provisioningOutbox.subscriptionId, subscription.id));
    // An unreachable router does not use up the row's attempts: it only delays the work.
    expect(row).toMatchObject({ status: "pending", attempts: 0 });
    expect(row?.lastError).toMatch(/cannot connect|connection lost|connection closed/);
    await waitForHealth();
    const [health] = await database.db.select().from(routers).where(eq(routers.id, routerId));
    expect(health?.lastError).toMatch(/cannot connect|connection lost|connection closed/);
    await router.start();
    // The router's circuit stays open for its cool-down (real time), then the row goes through.
    await waitFor(async () => {
      clock.advance(60_000);
      await stack.worker.drain();
      return secret(subscription.networkUsername) !== undefined;
    });
    const [after] = await database.db
      .select({ status: subscriptions.status })
      .from(subscriptions)
      .where(eq(subscriptions.id, subscription.id));
    expect(after?.status).toBe("pending");
    const pending = await database.db.execute(
      sql`select count(*)::int as n from provisioning_outbox where status = 'pending' and subscription_id = ${subscription.id}`,
    );
    expect(JSON.stringify(pending)).toContain('"n":0');
  });
});

async function waitForHealth() {
  await new Promise((r) => setTimeout(r, 50));
}
