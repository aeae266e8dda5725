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
 * the moment of their unsold date when two instances' clocks stand a moment apart: both lock them in
 * one order (by id), whatever order a query plan would find them in (the code index, say), or they
 * could deadlock. Each case holds one of two codes in another session so that both writers get as
 * far as their order lets them, in the order that deadlocks if either of them locks otherwise.
 * Races only happen on a real server.
 */
let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase({ maxConnections: 10 });
});
afterAll(async () => {
  await database?.close();
});

/** A fresh batch at its unsold date, and two of its codes whose order by code is not their order by id. */
async function codesAtTheirUnsoldDate(createdAt: string) {
  const created = new FakeClock(createdAt);
  const { ctx } = billingContext(database.db, created);
  const plan = await createPlan(database.db, { priceCents: 2_000, kind: "hotspot", periodUnit: "days" });
  const { codes } = await createVoucherBatch(ctx, admin, { planId: plan.id, quantity: 40 });
  const byId = (await database.db.select().from(vouchers).where(inArray(vouchers.code, codes))).sort(
    (x, y) => x.id - y.id,
  );
  const at = byId.findIndex((v, i) => i > 0 && v.code < byId[i - 1]!.code);
  if (at < 0) throw new Error("forty codes drawn in ascending order: draw again");
  const expiry = created.now().getTime() + ctx.settings.unsoldVoucherDays * 86_400_000;
  return {
    codes,
    lower: byId[at - 1]!,
    higher: byId[at]!,
    expiry,
    // One instance a moment before the codes' unsold date, the other at it.
    seller: billingContext(database.db, new FakeClock(new Date(expiry - 1))).ctx,
    expirer: billingContext(database.db, new FakeClock(new Date(expiry))).ctx,
  };
}

/** Holds `held`, starts the sale then the expiry, lets go once both wait, and settles both. */
async function saleThenExpiryAround(
  batch: Awaited<ReturnType<typeof codesAtTheirUnsoldDate>>,
  held: { id: number },
) {
  const holding = await holdLock(
    database.url!,
    (tx) => tx`select id from vouchers where id = ${held.id} for update`,
  );
  try {
    const selling = markVouchersSold(batch.seller, admin, { codes: [batch.lower.code, batch.higher.code] });
    await eventually(waitingForLocks(database.db, 1), 15_000);
    const expiring = expireVouchers(batch.expirer, job);
    await eventually(waitingForLocks(database.db, 2), 15_000);
    await holding.release();
    const outcomes = await Promise.allSettled([selling, expiring]);
    return outcomes.map((o) => (o.status === "rejected" ? String(o.reason) : "ok"));
  } finally {
    await holding.release();
  }
}

async function statusesAfter(batch: Awaited<ReturnType<typeof codesAtTheirUnsoldDate>>) {
  const rows = await database.db.select().from(vouchers).where(inArray(vouchers.code, batch.codes));
  const statusOf = (id: number) => rows.find((v) => v.id === id)!.status;
  return {
    pair: [statusOf(batch.lower.id), statusOf(batch.higher.id)],
    expired: rows.filter((v) => v.status === "expired").length,
    // A code sold lasts its plan's day from the sale: the job did not expire it after.
    soldUntil: [...new Set(rows.filter((v) => v.status === "sold").map((v) => v.expiresAt.getTime()))],
  };
}

describe.runIf(onRealPostgres())("printed vouchers sold while they expire", () => {
  it("the sale waiting on its second code: both commit, the pair sold, the rest expired", async () => {
    const batch = await codesAtTheirUnsoldDate("2026-09-01T10:00:00Z");
    expect(await saleThenExpiryAround(batch, batch.higher)).toEqual(["ok", "ok"]);
    expect(await statusesAfter(batch)).toEqual({
      pair: ["sold", "sold"],
      expired: batch.codes.length - 2,
      soldUntil: [batch.expiry - 1 + 86_400_000],
    });
  });

  it("the sale waiting on its first code: the expiry job waits behind it, and both commit", async () => {
    const batch = await codesAtTheirUnsoldDate("2026-09-02T10:00:00Z");
    expect(await saleThenExpiryAround(batch, batch.lower)).toEqual(["ok", "ok"]);
    expect(await statusesAfter(batch)).toEqual({
      pair: ["sold", "sold"],
      expired: batch.codes.length - 2,
      soldUntil: [batch.expiry - 1 + 86_400_000],
    });
  });
});
