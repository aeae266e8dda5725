import { and, eq, inArray } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { purgeIdempotencyKeys } from "../../src/billing/idempotency.ts";
import { setCustomerLanguage } from "../../src/billing/preferences.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { DAY, HOUR } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { auditLog, idempotencyKeys } from "../../src/db/schema/index.ts";
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

  it("takes each keyed request once, so a late copy of an older choice does not undo a newer one", async () => {
    const { ctx } = billingContext(database.db);
    const plan = await createPlan(database.db, { priceCents: 100_000 });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Nakala",
      phone: uniquePhone(),
      planId: plan.id,
    });
    const subscriber = { kind: "subscriber" as const, id: customer.phone, channel: "ussd" };
    const choose = (language: "en" | "sw", idempotencyKey: string) =>
      setCustomerLanguage(ctx, subscriber, { customerId: customer.id, language, idempotencyKey });

    expect(await choose("sw", `ussd:lang-${customer.id}#3`)).toBe(true);
    expect(await choose("en", `ussd:lang-${customer.id}#6`)).toBe(true);
    expect(await choose("sw", `ussd:lang-${customer.id}#3`)).toBe(true);
    expect((await reloadCustomer(database.db, customer.id)).language).toBe("en");
    const entries = await database.db
      .select()
      .from(auditLog)
      .where(and(eq(auditLog.entity, "customer"), eq(auditLog.entityId, String(customer.id))));
    expect(entries.map((e) => e.details)).toEqual([
      { from: "en", to: "sw" },
      { from: "sw", to: "en" },
    ]);
  });
});

describe("idempotency key housekeeping", () => {
  it("drops keys older than two days and keeps the rest", async () => {
    const now = new Date("2026-06-10T12:00:00Z");
    const at = (ms: number) => new Date(now.getTime() - ms);
    await database.db.insert(idempotencyKeys).values([
      { key: "ussd:old#2", createdAt: at(2 * DAY + HOUR) },
      { key: "ussd:recent#2", createdAt: at(2 * DAY - HOUR) },
    ]);
    const { removed } = await purgeIdempotencyKeys(database.db, now);
    expect(removed).toBeGreaterThanOrEqual(1);
    const left = await database.db
      .select({ key: idempotencyKeys.key })
      .from(idempotencyKeys)
      .where(inArray(idempotencyKeys.key, ["ussd:old#2", "ussd:recent#2"]));
    expect(left).toEqual([{ key: "ussd:recent#2" }]);
  });
});
