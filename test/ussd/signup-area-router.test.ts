import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { customers } from "../../src/db/schema/index.ts";
import { billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { choose, startUssdWorld, type UssdWorld } from "./world.ts";

/**
 * SIGNUP_AREAS maps an area to a router id (`Kahawa West=3`), checked only for its shape at start:
 * an operator may set the areas before adding the router, or mistype the id. A sign-up from such an
 * area is taken all the same, with no router, for an admin to choose one (/signups).
 */
let database: Database;
let world: UssdWorld;
const clock = new FakeClock("2026-06-01T06:00:00Z");
let planName: string;

beforeAll(async () => {
  database = await createTestDatabase();
  const { ctx } = billingContext(database.db, clock);
  planName = `Area Home ${process.pid % 1000}`;
  await createPlan(database.db, { name: planName, priceCents: 250_000 });
  world = await startUssdWorld(ctx, database.db, {
    settings: { signupAreas: [{ name: "Kahawa West", routerId: 4242 }] },
  });
});
afterAll(async () => {
  await world?.close();
  await database?.close();
});

describe("sign-up in an area whose configured router does not exist", () => {
  it("still signs the newcomer up (router assigned later) instead of failing every time", async () => {
    const phone = uniquePhone();
    const ussd = world.dial(phone);
    const path = await choose(ussd, "2", new RegExp(`\\n(\\d+)\\. ${planName}:`));
    expect(await ussd(`${path}*Amina Wekesa*1`)).toContain("Sign up Amina Wekesa in Kahawa West?");
    const done = await ussd(`${path}*Amina Wekesa*1*1`);
    const created = await database.db.select().from(customers).where(eq(customers.phone, phone));
    expect({ done, created: created.length }).toEqual({
      done: expect.stringMatching(/^END Welcome!/),
      created: 1,
    });
  });
});
