import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { createMenuServices } from "../../src/menu/services.ts";
import { SessionCache } from "../../src/menu/session-cache.ts";
import { createUssdRoutes } from "../../src/ussd/routes.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { settings, silent } from "./world.ts";

/**
 * Two instances behind one USSD URL (Worker isolates, or Node replicas), each with its own
 * SessionCache: a session's requests may reach either. The README promises the cache is only a
 * speed-up, "so the menu stays correct without it".
 */

let database: Database;
const clock = new FakeClock("2026-06-01T06:00:00Z");
let ctx: ReturnType<typeof billingContext>["ctx"];

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
});
afterAll(async () => {
  await database.close();
});

const instance = () =>
  createUssdRoutes({
    db: database.db,
    services: createMenuServices(ctx, { planCacheMs: 0 }),
    settings,
    logger: silent,
    cache: new SessionCache(),
  });

describe("a session served by two instances", () => {
  it("speaks Kiswahili on every screen after the customer chose it, whichever instance answers", async () => {
    const [a, b] = [instance(), instance()];
    const plan = await createPlan(database.db, { priceCents: 150_000, name: "Fibre 15" });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Achieng Otieno",
      phone: uniquePhone(),
      planId: plan.id,
    });
    const sessionId = `ATUid_two_${process.pid}`;
    const on = (routes: ReturnType<typeof instance>) => async (text: string) => {
      const body = new URLSearchParams({
        sessionId,
        phoneNumber: customer.phone,
        text,
        serviceCode: "*384*1#",
      });
      return (await routes.request("/", { method: "POST", body })).text();
    };
    expect(await on(a)("")).toMatch(/^CON Kibera Net\n1\. My account/);
    expect(await on(b)("5*2*1")).toMatch(/^CON Lugha imewekwa kuwa Kiswahili\./);
    // The next keypress reaches the first instance again.
    expect(await on(a)("5*2*1*1")).toMatch(/^CON Kifurushi: Fibre 15\nHali: /);
  });
});
