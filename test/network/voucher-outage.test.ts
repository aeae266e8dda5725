import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sellVoucherInTx } from "../../src/billing/vouchers.ts";
import { FakeClock } from "../../src/clock.ts";
import { type Database, queryRows } from "../../src/db/client.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { emulatedRouter, networkStack, waitFor } from "./support.ts";

// A database of its own: every router registered here is one this test controls.
let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

describe("a voucher for every router while one router is down", () => {
  it("a router that is down does not keep a voucher from the routers that are up, and gets it when back", async () => {
    const one = await emulatedRouter(database.db);
    const two = await emulatedRouter(database.db);
    const clock = new FakeClock(new Date());
    const stack = networkStack(database.db, clock);
    try {
      const { ctx } = billingContext(database.db, clock);
      const plan = await createPlan(database.db, {
        priceCents: 2_000,
        kind: "hotspot",
        periodUnit: "hours",
        periodCount: 3,
      });
      await one.emulator.stop();
      const sold = await database.db.transaction((tx) =>
        sellVoucherInTx(tx, ctx, admin, { planId: plan.id, phone: uniquePhone(), language: "en" }),
      );
      await stack.worker.drain();
      expect(two.emulator.find("/ip/hotspot/user", sold.code)).toBeDefined();
      await one.emulator.start();
      await waitFor(async () => {
        clock.advance(10 * 60_000);
        await stack.worker.drain();
        return one.emulator.find("/ip/hotspot/user", sold.code) !== undefined;
      });
      const rows = await queryRows<{ status: string; last_error: string | null }>(
        database.db,
        sql`select status, last_error from provisioning_outbox where voucher_id = ${sold.voucherId}`,
      );
      expect(rows).toMatchObject([{ status: "done" }]);
    } finally {
      await stack.close();
      await one.emulator.stop();
      await two.emulator.stop();
    }
  });
});
