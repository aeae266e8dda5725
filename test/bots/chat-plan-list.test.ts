import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { paymentIntents, plans } from "../../src/db/schema/index.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import {
  button,
  buttonsOf,
  contactUpdate,
  lastMenuIn,
  lastShownIn,
  pressUpdate,
  startFakeTelegram,
  startInstance,
  textUpdate,
} from "./world.ts";

/**
 * A chat keeps its place in the menu as the inputs typed since home, replayed on every message: a
 * list read afresh (the cache lapsed, or another instance answers) must not give a number another
 * plan. What the confirm showed is what is bought.
 */

let database: Database;
let fake: Awaited<ReturnType<typeof startFakeTelegram>>;
let ctx: ReturnType<typeof billingContext>["ctx"];
const clock = new FakeClock("2026-06-01T06:00:00Z");

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  fake = await startFakeTelegram();
});
afterAll(async () => {
  await fake?.close();
  await database?.close();
});

describe("a voucher list that changes while a chat reads it", () => {
  it("sells the voucher the confirm showed, or none, never another at another price", async () => {
    const hour = await createPlan(database.db, {
      name: "Hour Pass",
      kind: "hotspot",
      priceCents: 2_000,
      periodUnit: "hours",
    });
    await createPlan(database.db, {
      name: "Week Pass",
      kind: "hotspot",
      priceCents: 30_000,
      periodUnit: "days",
      periodCount: 7,
    });
    const home = await createPlan(database.db, { priceCents: 100_000, name: "Home 10" });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Wanjiru Kamau",
      phone: uniquePhone(),
      planId: home.id,
    });
    // Two instances of the app behind one webhook: each has its own cache of what sessions read.
    const first = startInstance(ctx, fake);
    const second = startInstance(ctx, fake);
    const chat = 9_700_001;
    const press = async (instance: typeof first, prefix: string) => {
      const menu = lastMenuIn(fake, chat);
      expect(await instance.deliver(pressUpdate(fake, chat, menu.messageId!, button(menu, prefix)))).toBe(
        200,
      );
    };
    await first.deliver(textUpdate(chat, "/start"));
    await first.deliver(contactUpdate(chat, { user_id: chat, phone_number: customer.phone }));
    await press(first, "3. Buy hotspot voucher");
    expect(buttonsOf(lastMenuIn(fake, chat)).map((b) => b.text)).toContain("1. Hour Pass: KES 20");
    await press(first, "1. Hour Pass");
    expect(lastShownIn(fake, chat).payload.text).toMatch(/^Hour Pass: KES 20/);

    // The admin takes the hour pass off sale; the confirm reaches the other instance.
    await database.db.update(plans).set({ active: false }).where(eq(plans.id, hour.id));
    await press(second, "1.");

    const intents = await database.db
      .select()
      .from(paymentIntents)
      .where(eq(paymentIntents.phone, customer.phone));
    for (const intent of intents) expect(intent).toMatchObject({ planId: hour.id, amountCents: 2_000 });
    expect(lastShownIn(fake, chat).payload.text).not.toMatch(/KES 300/);
  });
});
