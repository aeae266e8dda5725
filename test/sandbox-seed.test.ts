import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findCustomerByPhone, getAccountSummary } from "../src/billing/accounts.ts";
import type { Database } from "../src/db/client.ts";
import { DEMO_PHONE, seedSandbox } from "../src/sandbox/seed.ts";
import { billingContext, count } from "./support/billing.ts";
import { createTestDatabase } from "./support/db.ts";

describe("sandbox seed", () => {
  let database: Database;
  beforeAll(async () => {
    database = await createTestDatabase();
  });
  afterAll(async () => {
    await database.close();
  });

  it("gives an empty sandbox plans and a demo subscriber to try, once", async () => {
    const { ctx, clock } = billingContext(database.db);
    expect(await seedSandbox(ctx, null)).toBe(true);
    expect(await seedSandbox(ctx, null)).toBe(false);
    expect(
      await count(database.db, sql`select count(*)::int as n from plans where kind = 'hotspot'`),
    ).toBeGreaterThan(0);
    const demo = await findCustomerByPhone(database.db, DEMO_PHONE);
    const summary = await getAccountSummary(database.db, demo!.id, clock.now());
    expect(summary.subscription?.status).toBe("pending");
    expect(summary.amountDueCents).toBe(summary.plan!.priceCents);
  });
});
