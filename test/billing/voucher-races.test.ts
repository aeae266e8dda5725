import { inArray } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createVoucherBatch, expireVouchers, markVouchersSold } from "../../src/billing/vouchers.ts";
import { FakeClock } from "../../src/clock.ts";
import { vouchers } from "../../src/db/schema/index.ts";
import { eventually } from "../payments/dispatch-support.ts";
import { admin, billingContext, createPlan, job } from "../support/billing.ts";
import { createTestDatabase, onRealPostgres, type TestDatabase } from "../support/db.ts";
import { holdLock, waitingForLocks } from "../support/locks.ts";

/**
 * Marking printed codes sold and the expiry job both lock several vouchers. They meet on codes at
 * the moment of their unsold date when two instances' clocks stand a moment apart: both lock them
 * in one order (by id), whatever order a query plan would find them in (the code index, say), or
 * they could deadlock. Races only happen on a real server.
 */
let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase({ maxConnections: 10 });
});
afterAll(async () => {
  await database?.close();
});

describe.runIf(onRealPostgres())("printed vouchers sold while they expire", () => {
  it("both commit, and each code ends either sold or expired", async () => {
    const created = new FakeClock("2026-09-01T10:00:00Z");
    const { ctx } = billingContext(database.db, created);
    const plan = await createPlan(database.db, { priceCents: 2_000, kind: "hotspot", periodUnit: "days" });
    const { codes } = await createVoucherBatch(ctx, admin, { planId: plan.id, quantity: 40 });
    const rows = await database.db.select().from(vouchers).where(inArray(vouchers.code, codes));
    // Two codes whose order by code is the reverse of their order by id.
    const byId = [...rows].sort((x, y) => x.id - y.id);
    const first = byId[0]!;
    const second = byId.find((v) => v.code < first.code)!;
    const expiry = created.now().getTime() + ctx.settings.unsoldVoucherDays * 86_400_000;
    // One instance a moment before the codes' unsold date, the other at it.
    const seller = billingContext(database.db, new FakeClock(new Date(expiry - 1))).ctx;
    const expirer = billingContext(database.db, new FakeClock(new Date(expiry))).ctx;

    // Another session holds the later code, so each writer gets as far as its order lets it.
    const holding = await holdLock(
      database.url!,
      (tx) => tx`select id from vouchers where id = ${second.id} for update`,
    );
    let outcomes: PromiseSettledResult<unknown>[];
    try {
      const selling = markVouchersSold(seller, admin, { codes: [first.code, second.code] });
      await eventually(waitingForLocks(database.db, 1), 15_000);
      const expiring = expireVouchers(expirer, job);
      await eventually(waitingForLocks(database.db, 2), 15_000);
      await holding.release();
      outcomes = await Promise.allSettled([selling, expiring]);
    } finally {
      await holding.release();
    }
    expect(outcomes.map((o) => (o.status === "rejected" ? String(o.reason) : "ok"))).toEqual(["ok", "ok"]);
    const after = await database.db.select().from(vouchers).where(inArray(vouchers.code, codes));
    const statusOf = (id: number) => after.find((v) => v.id === id)!.status;
    // The sale went first: both codes sold, lasting their day from the sale, not expired after it.
    expect([statusOf(first.id), statusOf(second.id)]).toEqual(["sold", "sold"]);
    expect(after.filter((v) => v.status === "expired")).toHaveLength(codes.length - 2);
  });
});
