import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { markVouchersRedeemed } from "../../src/billing/voucher-redemption.ts";
import { sellVoucherInTx } from "../../src/billing/vouchers.ts";
import { FakeClock } from "../../src/clock.ts";
import { auditLog, provisioningOutbox, vouchers } from "../../src/db/schema/index.ts";
import type { RouterOsEmulator } from "../../src/network/emulator/server.ts";
import { reconcileAll } from "../../src/network/reconcile.ts";
import { checkPrintedVoucher } from "../../src/portal/service.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase, onRealPostgres, type TestDatabase } from "../support/db.ts";
import { holdLock, waitingForLocks } from "../support/locks.ts";
import { emulatedRouter, networkStack, waitFor } from "./support.ts";

/**
 * A voucher sold for no router in particular (USSD, a chat) is a hotspot user on every router, and
 * each router counts its time and data apart: the first site to serve it keeps it.
 */

let database: TestDatabase;
let siteA: { emulator: RouterOsEmulator; routerId: number };
let siteB: { emulator: RouterOsEmulator; routerId: number };
let stack: ReturnType<typeof networkStack>;
const clock = new FakeClock(new Date());

beforeAll(async () => {
  database = await createTestDatabase({ maxConnections: 4 });
  siteA = await emulatedRouter(database.db);
  siteB = await emulatedRouter(database.db);
  stack = networkStack(database.db, clock);
});
afterAll(async () => {
  await stack.close();
  await siteA.emulator.stop();
  await siteB.emulator.stop();
  await database.close();
});

const deps = () => ({ db: database.db, clock, pool: stack.pool });
const hotspotUser = (site: typeof siteA, code: string) => site.emulator.find("/ip/hotspot/user", code);
const sessionsOf = (site: typeof siteA, code: string) =>
  site.emulator.items("/ip/hotspot/active").filter((s) => s.user === code).length;

async function sell(planId: number, routerId: number | null = null) {
  const { ctx } = billingContext(database.db, clock);
  return database.db.transaction((tx) =>
    sellVoucherInTx(tx, ctx, admin, { planId, phone: uniquePhone(), language: "en", routerId }),
  );
}

async function voucherRow(id: number) {
  const [row] = await database.db.select().from(vouchers).where(eq(vouchers.id, id));
  return row!;
}

describe("a voucher for any router", () => {
  it("is kept by the first router seen serving it and taken off the others, their sessions dropped", async () => {
    const plan = await createPlan(database.db, { priceCents: 2_000, kind: "hotspot", periodUnit: "days" });
    const anywhere = await sell(plan.id);
    const forA = await sell(plan.id, siteA.routerId);
    await stack.worker.drain();
    expect(hotspotUser(siteA, anywhere.code)).toBeDefined();
    expect(hotspotUser(siteB, anywhere.code)).toBeDefined();

    // The buyer logs in at site B; the code sold for site A is used there.
    clock.advance(20 * 60_000);
    siteB.emulator.update("/ip/hotspot/active", siteB.emulator.connectHotspot(anywhere.code), {
      uptime: "10m",
    });
    siteA.emulator.update("/ip/hotspot/active", siteA.emulator.connectHotspot(forA.code), { uptime: "5m" });
    const run = await reconcileAll(deps());
    expect(run.counts.vouchersUsed).toBe(2);
    expect(run.counts.vouchersBound).toBe(1);
    expect(await voucherRow(anywhere.voucherId)).toMatchObject({
      status: "redeemed",
      routerId: siteB.routerId,
      redeemedAt: new Date(clock.now().getTime() - 10 * 60_000),
    });
    expect((await voucherRow(forA.voucherId)).routerId).toBe(siteA.routerId);
    const bound = await database.db
      .select({ entityId: auditLog.entityId, details: auditLog.details })
      .from(auditLog)
      .where(eq(auditLog.action, "voucher.bound_to_router"));
    expect(bound).toEqual([{ entityId: String(anywhere.voucherId), details: { routerId: siteB.routerId } }]);

    // Someone else logs in at site A with the same code before site A hears of it.
    siteA.emulator.connectHotspot(anywhere.code);
    await stack.worker.drain();
    expect(hotspotUser(siteA, anywhere.code)).toBeUndefined();
    expect(sessionsOf(siteA, anywhere.code)).toBe(0);
    expect(hotspotUser(siteB, anywhere.code)).toBeDefined();
    expect(sessionsOf(siteB, anywhere.code)).toBe(1);
    expect(hotspotUser(siteA, forA.code)).toBeDefined();
    expect(sessionsOf(siteA, forA.code)).toBe(1);
    // Typed into site A's login page, the code is said to be another hotspot's.
    expect(await checkPrintedVoucher(database.db, siteA.routerId, anywhere.code, clock.now())).toEqual({
      ok: false,
      reason: "other_router",
    });

    // The next runs change nothing: each router holds what it should.
    const again = await reconcileAll(deps());
    expect(again.counts).toMatchObject({ vouchersUsed: 0, vouchersBound: 0, created: 0, removed: 0 });
  });

  it("a code redeemed before it was bound is bound where it is seen next", async () => {
    const plan = await createPlan(database.db, { priceCents: 3_000, kind: "hotspot", periodUnit: "days" });
    const sold = await sell(plan.id);
    await stack.worker.drain();
    const redeemedAt = clock.now();
    await database.db
      .update(vouchers)
      .set({ status: "redeemed", redeemedAt })
      .where(eq(vouchers.id, sold.voucherId));
    clock.advance(60_000);
    const user = hotspotUser(siteA, sold.code)!;
    siteA.emulator.update("/ip/hotspot/user", user[".id"]!, { uptime: "40m" });

    const run = await reconcileAll(deps());
    expect(run.counts).toMatchObject({ vouchersUsed: 0, vouchersBound: 1 });
    expect(await voucherRow(sold.voucherId)).toMatchObject({ routerId: siteA.routerId, redeemedAt });
    await stack.worker.drain();
    expect(hotspotUser(siteB, sold.code)).toBeUndefined();
    expect(hotspotUser(siteA, sold.code)).toBeDefined();
  });
});

describe.runIf(onRealPostgres())("two routers seeing one code in use at once", () => {
  it("bind it to one of them, once", async () => {
    const plan = await createPlan(database.db, { priceCents: 4_000, kind: "hotspot", periodUnit: "days" });
    const sold = await sell(plan.id);
    const since = clock.now();
    const jobs = () =>
      database.db
        .select({ id: provisioningOutbox.id, routerId: provisioningOutbox.routerId })
        .from(provisioningOutbox)
        .where(
          and(
            eq(provisioningOutbox.voucherId, sold.voucherId),
            eq(provisioningOutbox.action, "ensure_voucher"),
          ),
        )
        .orderBy(provisioningOutbox.id);
    const jobsBefore = (await jobs()).length;
    // Both reconciliations reach the voucher's row together.
    const holding = await holdLock(
      database.url!,
      (tx) => tx`select id from vouchers where id = ${sold.voucherId} for update`,
    );
    let marks: Array<Awaited<ReturnType<typeof markVouchersRedeemed>>>;
    try {
      const marking = [siteA, siteB].map((site) =>
        markVouchersRedeemed({ db: database.db, clock }, admin, site.routerId, [
          { voucherId: sold.voucherId, since },
        ]),
      );
      await waitFor(async () => (await waitingForLocks(database.db, 2)()) === true);
      await holding.release();
      marks = await Promise.all(marking);
    } finally {
      await holding.release();
    }
    expect(marks.map((m) => m.bound.length).sort()).toEqual([0, 1]);
    expect(marks.map((m) => m.redeemed.length).sort()).toEqual([0, 1]);
    const keeper = marks[0]!.bound.length === 1 ? siteA : siteB;
    expect((await voucherRow(sold.voucherId)).routerId).toBe(keeper.routerId);
    // One row per router, each under its router's key, as the voucher's other rows there (its expiry).
    expect((await jobs()).slice(jobsBefore).map((j) => j.routerId)).toEqual([siteA.routerId, siteB.routerId]);
  });
});
