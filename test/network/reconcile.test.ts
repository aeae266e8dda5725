import { desc, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyPayment } from "../../src/billing/payments.ts";
import { updatePlan } from "../../src/billing/plans.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { sellVoucherInTx } from "../../src/billing/vouchers.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { auditLog, jobRuns, routers, vouchers } from "../../src/db/schema/index.ts";
import { formatDuration } from "../../src/network/durations.ts";
import type { RouterOsEmulator } from "../../src/network/emulator/server.ts";
import { reconcileAll } from "../../src/network/reconcile.ts";
import { addRouter } from "../../src/network/routers.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { box, emulatedRouter, networkStack } from "./support.ts";

let database: Database;
let router: RouterOsEmulator;
let routerId: number;
let stack: ReturnType<typeof networkStack>;
const clock = new FakeClock(new Date());

beforeAll(async () => {
  database = await createTestDatabase();
  ({ emulator: router, routerId } = await emulatedRouter(database.db));
  stack = networkStack(database.db, clock, {
    connection: {
      connectTimeoutMs: 1_000,
      breaker: { threshold: 1, baseCooldownMs: 60_000, maxCooldownMs: 60_000 },
    },
  });
});
afterAll(async () => {
  await stack.close();
  await router.stop();
  await database.close();
});

const deps = () => ({ db: database.db, clock, pool: stack.pool });

async function activeSubscriber(planId: number, name: string) {
  const { ctx } = billingContext(database.db, clock);
  const created = await createCustomerWithSubscription(ctx, admin, {
    name,
    phone: uniquePhone(),
    planId,
    routerId,
  });
  await applyPayment(ctx, admin, {
    customerId: created.customer.id,
    method: "cash",
    provider: "cash",
    providerRef: `first-${created.customer.id}`,
    amountCents: created.invoice.amountCents,
  });
  return created.subscription;
}

describe("reconciliation", () => {
  it("finds secrets changed by hand, repairs them, leaves entries without the marker alone; a dry run changes nothing", async () => {
    const plan = await createPlan(database.db, { priceCents: 100_000, rateLimit: "4M/8M" });
    const other = await createPlan(database.db, { priceCents: 50_000, rateLimit: "1M/1M" });
    const subs = await Promise.all(
      ["Amina", "Baraka", "Chege", "Dalia"].map((n) => activeSubscriber(plan.id, n)),
    );
    await stack.worker.drain();
    const [amina, baraka, chege, dalia] = subs.map((s) => s!);
    const id = (name: string) => router.find("/ppp/secret", name)![".id"]!;

    // An admin edits things by hand in Winbox.
    router.update("/ppp/secret", id(amina!.networkUsername), {
      profile: `tandao-${other.code}`,
      password: "changed",
    });
    router.update("/ppp/secret", id(baraka!.networkUsername), { disabled: "true" });
    router.delete("/ppp/secret", id(chege!.networkUsername));
    router.insert("/ppp/secret", {
      name: "ghost",
      password: "x",
      comment: "tandao:sub:999999",
      profile: "default",
    });
    router.insert("/ppp/secret", {
      name: "office-ap",
      password: "own",
      profile: "default",
      comment: "admin's own",
    });
    router.insert("/ppp/secret", { name: "no-comment", password: "own", profile: "default" });
    const profile = router.find("/ppp/profile", `tandao-${plan.code}`)!;
    router.update("/ppp/profile", profile[".id"]!, { "rate-limit": "100M/100M" });
    // Sessions: Amina is on the wrong speed (kicked), Dalia is untouched (not kicked), ghost must go.
    router.connectPppoe(amina!.networkUsername);
    router.connectPppoe(dalia!.networkUsername);
    router.connectPppoe("ghost");
    router.connectPppoe("office-ap");

    const before = JSON.stringify([
      router.items("/ppp/secret"),
      router.items("/ppp/profile"),
      router.items("/ppp/active"),
    ]);
    const writes = () => router.received.filter((c) => /\/(add|set|remove)$/.test(c.command)).length;
    const writesBefore = writes();
    const dry = await reconcileAll(deps(), { dryRun: true });
    const report = dry.reports.find((r) => r.routerId === routerId)!;
    expect(report.ok).toBe(true);
    expect(
      JSON.stringify([
        router.items("/ppp/secret"),
        router.items("/ppp/profile"),
        router.items("/ppp/active"),
      ]),
    ).toBe(before);
    expect(writes()).toBe(writesBefore);
    const issues = Object.fromEntries(report.drift.map((d) => [d.name, d]));
    expect(issues[amina!.networkUsername]).toMatchObject({
      issue: "changed",
      fields: ["password", "profile"],
    });
    expect(issues[baraka!.networkUsername]).toMatchObject({ issue: "changed", fields: ["disabled"] });
    expect(issues[chege!.networkUsername]).toMatchObject({ issue: "missing" });
    expect(issues.ghost).toMatchObject({ issue: "extra" });
    expect(issues[`tandao-${plan.code}`]).toMatchObject({ issue: "changed", fields: ["rate-limit"] });
    expect(issues["office-ap"]).toBeUndefined();
    expect(issues[dalia!.networkUsername]).toBeUndefined();
    // created: Chege's secret and the profile of the other (active, so wanted) plan.
    expect(report.counts).toMatchObject({ created: 2, updated: 3, removed: 1, kicked: 2 });

    const kicksBefore = router.count("/ppp/active/remove");
    const run = await reconcileAll(deps());
    expect(run.reports.find((r) => r.routerId === routerId)?.ok).toBe(true);
    for (const s of [amina, baraka, chege, dalia]) {
      expect(router.find("/ppp/secret", s!.networkUsername)).toMatchObject({
        password: s!.networkPassword,
        profile: `tandao-${plan.code}`,
        disabled: "false",
        comment: `tandao:sub:${s!.id}`,
      });
    }
    expect(router.find("/ppp/profile", `tandao-${plan.code}`)?.["rate-limit"]).toBe("4M/8M");
    expect(router.find("/ppp/secret", "ghost")).toBeUndefined();
    expect(router.find("/ppp/secret", "office-ap")).toMatchObject({
      password: "own",
      comment: "admin's own",
    });
    expect(router.find("/ppp/secret", "no-comment")).toMatchObject({ password: "own" });
    // Only the sessions whose access or speed changed were dropped.
    expect(router.count("/ppp/active/remove") - kicksBefore).toBe(2);
    expect(router.find("/ppp/active", amina!.networkUsername)).toBeUndefined();
    expect(router.find("/ppp/active", "ghost")).toBeUndefined();
    expect(router.find("/ppp/active", dalia!.networkUsername)).toBeDefined();
    expect(router.find("/ppp/active", "office-ap")).toBeDefined();

    const again = await reconcileAll(deps());
    expect(again.reports.find((r) => r.routerId === routerId)?.drift).toEqual([]);
    const runs = await database.db.select().from(jobRuns).where(eq(jobRuns.job, "network.reconcile"));
    expect(runs.length).toBeGreaterThanOrEqual(2);
    expect(runs[0]).toMatchObject({ status: "ok" });
    expect(runs[0]?.counts).toMatchObject({ created: 2, removed: 1 });
  });

  it("repairs a voucher's limits changed by hand and removes a hotspot user nobody sold", async () => {
    const { ctx } = billingContext(database.db, clock);
    const plan = await createPlan(database.db, {
      priceCents: 3_000,
      kind: "hotspot",
      periodUnit: "days",
      rateLimit: "2M/2M",
      timeLimitSeconds: 7_200,
      dataCapBytes: 500_000_000,
    });
    const sold = await database.db.transaction((tx) =>
      sellVoucherInTx(tx, ctx, admin, { planId: plan.id, phone: uniquePhone(), language: "en", routerId }),
    );
    await stack.worker.drain();
    const user = router.find("/ip/hotspot/user", sold.code)!;
    router.update("/ip/hotspot/user", user[".id"]!, { "limit-uptime": "1w", "limit-bytes-total": "0" });
    router.insert("/ip/hotspot/user", { name: "STALE123", password: "x", comment: "tandao:voucher:987654" });
    router.insert("/ip/hotspot/user", { name: "guest", password: "guest" });
    const run = await reconcileAll(deps());
    const report = run.reports.find((r) => r.routerId === routerId)!;
    expect(report.drift).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          name: sold.code,
          issue: "changed",
          fields: ["limit-uptime", "limit-bytes-total"],
        }),
        expect.objectContaining({ name: "STALE123", issue: "extra" }),
      ]),
    );
    expect(router.find("/ip/hotspot/user", sold.code)).toMatchObject({
      "limit-uptime": "2h",
      "limit-bytes-total": "500000000",
    });
    expect(router.find("/ip/hotspot/user", "STALE123")).toBeUndefined();
    expect(router.find("/ip/hotspot/user", "guest")).toBeDefined();
  });

  it("marks a sold voucher redeemed once the router shows it used, from when its session began; a dry run marks nothing", async () => {
    const { ctx } = billingContext(database.db, clock);
    const plan = await createPlan(database.db, { priceCents: 2_000, kind: "hotspot", periodUnit: "days" });
    const [inUse, usedBefore, unused] = await Promise.all(
      [1, 2, 3].map(() =>
        database.db.transaction((tx) =>
          sellVoucherInTx(tx, ctx, admin, {
            planId: plan.id,
            phone: uniquePhone(),
            language: "en",
            routerId,
          }),
        ),
      ),
    );
    await stack.worker.drain();
    clock.advance(2 * 3_600_000);
    // One buyer is online now for 30 minutes; another used an hour and logged out.
    router.update("/ip/hotspot/active", router.connectHotspot(inUse!.code), { uptime: "30m" });
    router.update("/ip/hotspot/user", router.find("/ip/hotspot/user", usedBefore!.code)![".id"]!, {
      uptime: "1h5s",
    });
    const statusOf = async (id: number) => {
      const [row] = await database.db.select().from(vouchers).where(eq(vouchers.id, id));
      return { status: row!.status, redeemedAt: row!.redeemedAt };
    };

    await reconcileAll(deps(), { dryRun: true });
    expect((await statusOf(inUse!.voucherId)).status).toBe("sold");

    const run = await reconcileAll(deps());
    expect(run.counts.vouchersUsed).toBe(2);
    const now = clock.now().getTime();
    expect(await statusOf(inUse!.voucherId)).toEqual({
      status: "redeemed",
      redeemedAt: new Date(now - 30 * 60_000),
    });
    expect(await statusOf(usedBefore!.voucherId)).toEqual({ status: "redeemed", redeemedAt: new Date(now) });
    expect((await statusOf(unused!.voucherId)).status).toBe("sold");
    const audited = await database.db
      .select({ entityId: auditLog.entityId })
      .from(auditLog)
      .where(eq(auditLog.action, "voucher.redeemed"));
    expect(audited.map((a) => Number(a.entityId)).sort()).toEqual(
      [inUse!.voucherId, usedBefore!.voucherId].sort(),
    );

    // Still on the router, and the next run changes nothing.
    expect(router.find("/ip/hotspot/user", inUse!.code)).toBeDefined();
    clock.advance(60_000);
    expect((await reconcileAll(deps())).counts.vouchersUsed).toBe(0);
    expect((await statusOf(inUse!.voucherId)).redeemedAt).toEqual(new Date(now - 30 * 60_000));
  });

  it("keeps a sold voucher on the terms it was sold on when its plan is edited; codes sold later get the new terms", async () => {
    const { ctx } = billingContext(database.db, clock);
    const plan = await createPlan(database.db, {
      priceCents: 5_000,
      kind: "hotspot",
      periodUnit: "months",
      dataCapBytes: 2_000_000_000,
    });
    const sell = () =>
      database.db.transaction((tx) =>
        sellVoucherInTx(tx, ctx, admin, { planId: plan.id, phone: uniquePhone(), language: "en", routerId }),
      );
    const before = await sell();
    await stack.worker.drain();
    // A month of connected time is the calendar month the SMS names, not a fixed 30 days.
    const month = Math.round((before.expiresAt.getTime() - clock.now().getTime()) / 1_000);
    expect(router.find("/ip/hotspot/user", before.code)).toMatchObject({
      "limit-uptime": formatDuration(month),
      "limit-bytes-total": "2000000000",
    });

    await updatePlan(ctx, admin, plan.code, { dataCapBytes: 1_000_000_000, timeLimitSeconds: 36_000 });
    const after = await sell();
    await stack.worker.drain();
    await reconcileAll(deps());
    expect(router.find("/ip/hotspot/user", before.code)).toMatchObject({
      "limit-uptime": formatDuration(month),
      "limit-bytes-total": "2000000000",
    });
    expect(router.find("/ip/hotspot/user", after.code)).toMatchObject({
      "limit-uptime": "10h",
      "limit-bytes-total": "1000000000",
    });
  });

  it("a slow router does not hold up the others: each is reconciled on its own", async () => {
    const slow = await emulatedRouter(database.db);
    slow.emulator.latencyMs = 800;
    try {
      const run = await reconcileAll(deps(), { dryRun: true });
      const slowReport = run.reports.find((r) => r.routerId === slow.routerId)!;
      const fastReport = run.reports.find((r) => r.routerId === routerId)!;
      expect(slowReport.ok).toBe(true);
      // log-in and one round of prints: two answers of 800 ms each
      expect(slowReport.durationMs).toBeGreaterThanOrEqual(1_500);
      expect(fastReport.ok).toBe(true);
      expect(fastReport.durationMs).toBeLessThan(800);
    } finally {
      await slow.emulator.stop();
      await stack.pool.invalidate(slow.routerId);
      await database.db.delete(routers).where(eq(routers.id, slow.routerId));
    }
  });

  it("a dead router fails its own report quickly while the others are reconciled", async () => {
    const dead = await addRouter(database.db, box, {
      name: "dead-tower",
      host: "127.0.0.1",
      port: 1,
      username: "x",
      password: "y",
    });
    const started = Date.now();
    const run = await reconcileAll(deps());
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(run.reports.find((r) => r.routerId === dead.id)).toMatchObject({ ok: false });
    expect(run.reports.find((r) => r.routerId === routerId)).toMatchObject({ ok: true });
    expect(run.counts.failedRouters).toBe(1);
    const [last] = await database.db.select().from(jobRuns).orderBy(desc(jobRuns.id)).limit(1);
    expect(last?.status).toBe("failed");
  });
});

describe("the captive portal's walled garden", () => {
  it("is kept on each router by the reconciliation: added once, left alone the next time, skipped by a dry run", async () => {
    const withPortal = { ...deps(), portalUrl: "https://wifi.kibera.example/portal" };
    const entries = () => router.items("/ip/hotspot/walled-garden");
    await reconcileAll(withPortal, { dryRun: true });
    expect(entries()).toEqual([]);

    await reconcileAll(withPortal);
    expect(entries()).toMatchObject([
      { action: "allow", "dst-host": "wifi.kibera.example", "dst-port": "443", comment: "tandao:portal" },
    ]);
    await reconcileAll(withPortal);
    expect(entries()).toHaveLength(1);
  });
});
