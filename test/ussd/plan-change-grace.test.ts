import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueRecurringInvoices } from "../../src/billing/invoicing.ts";
import { FakeClock, HOUR } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { subscriptions } from "../../src/db/schema/index.ts";
import { activeSubscriber, billingContext, createPlan, job } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { choose, startUssdWorld, type UssdWorld } from "./world.ts";

let database: Database;
let world: UssdWorld;
const clock = new FakeClock("2026-04-01T06:00:00Z");
let ctx: ReturnType<typeof billingContext>["ctx"];

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  world = await startUssdWorld(ctx, database.db);
});
afterAll(async () => {
  await world?.close();
  await database.close();
});

describe("a downgrade chosen on USSD in the grace days after the period end", () => {
  it("is not announced as done now: the plan only changes with the next period's payment", async () => {
    const big = await createPlan(database.db, { name: "Big 50", priceCents: 400_000 });
    const small = await createPlan(database.db, { name: "Small 2", priceCents: 90_000 });
    const { customer, subscription } = await activeSubscriber(ctx, big.id);
    // The renewal is out and unpaid; the period ended 12 hours ago (grace day, still active).
    clock.set(new Date(subscription.currentPeriodEnd.getTime() - 2 * 24 * HOUR));
    await issueRecurringInvoices(ctx, job);
    clock.set(new Date(subscription.currentPeriodEnd.getTime() + 12 * HOUR));

    const ussd = world.dial(customer.phone);
    const chosen = await choose(ussd, "4", /(\d+)\. Small 2: KES 900 for 1 month\n/);
    const confirm = await ussd(chosen);
    const done = await ussd(`${chosen}*1`);
    const [after] = await database.db
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.id, subscription.id));
    // What was done: the change waits for the next period (paid for by the renewal still owed).
    expect(after).toMatchObject({ planId: big.id, nextPlanId: small.id });
    // What the subscriber is told must say so, not "Change now" / "Your plan is now Small 2".
    expect(confirm).not.toContain("Change now");
    expect(done).not.toContain("Your plan is now Small 2");
  });
});
