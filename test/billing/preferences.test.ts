import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { setCustomerLanguage } from "../../src/billing/preferences.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import type { Database } from "../../src/db/client.ts";
import { auditLog } from "../../src/db/schema/index.ts";
import { admin, billingContext, createPlan, reloadCustomer, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";

let database: Database;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database.close();
});

describe("a customer's language", () => {
  it("is remembered, audited when it changes, and refused for an unknown customer", async () => {
    const { ctx } = billingContext(database.db);
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Lugha",
      phone: uniquePhone(),
      planId: plan.id,
    });
    const subscriber = { kind: "subscriber" as const, id: customer.phone, channel: "ussd" };

    expect(await setCustomerLanguage(ctx, subscriber, { customerId: customer.id, language: "sw" })).toBe(
      true,
    );
    expect((await reloadCustomer(database.db, customer.id)).language).toBe("sw");
    expect(await setCustomerLanguage(ctx, subscriber, { customerId: customer.id, language: "sw" })).toBe(
      true,
    );
    const entries = await database.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.entity, "customer"), eq(auditLog.entityId, String(customer.id))));
    expect(entries.map((e) => [e.action, e.details, e.actorId, e.channel])).toEqual([
      ["customer.language_changed", { from: "en", to: "sw" }, customer.phone, "ussd"],
    ]);
    expect(await setCustomerLanguage(ctx, subscriber, { customerId: 999_999, language: "en" })).toBe(false);
  });
});
