import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { type FakeWhatsApp, startFakeWhatsApp } from "../../src/bots/whatsapp-cloud/fake-api.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import {
  bodyOf,
  buttonReply,
  inbound,
  optionIdOf,
  startWhatsApp,
  text,
  type WhatsAppInstance,
} from "./whatsapp-cloud-world.ts";

/** What the WhatsApp adapter says itself is in the language the person reads the menu in. */

let database: Database;
let ctx: ReturnType<typeof billingContext>["ctx"];
const clock = new FakeClock("2026-05-01T06:00:00Z");
let cloud: FakeWhatsApp;
let wa: WhatsAppInstance;
let planId: number;

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  cloud = await startFakeWhatsApp({ now: () => clock.now() });
  wa = startWhatsApp(ctx, cloud);
  planId = (await createPlan(database.db, { priceCents: 150_000, name: "Fibre 1500" })).id;
});
afterAll(async () => {
  await wa?.channel.stop();
  await cloud?.close();
  await database?.close();
});

async function customer(language: "en" | "sw" = "en") {
  const created = await createCustomerWithSubscription(ctx, admin, {
    name: "Achieng Otieno",
    phone: uniquePhone(),
    planId,
    language,
  });
  return created.customer;
}

describe("what the WhatsApp adapter says itself, to a Kiswahili-speaking customer", () => {
  it("says an old button is out of date in Kiswahili", async () => {
    const person = await customer("sw");
    const waId = person.phone.slice(1);
    await wa.post(inbound(cloud, waId, text("habari")));
    // The menu is in Kiswahili; its language screen comes as reply buttons.
    expect(bodyOf(cloud.sentTo(waId).at(-1))).toContain("5. Lugha");
    await wa.post(inbound(cloud, waId, text("5")));
    const old = optionIdOf(cloud.sentTo(waId).at(-1), "1.");
    await wa.post(inbound(cloud, waId, text("0")));
    await wa.post(inbound(cloud, waId, buttonReply(old)));
    expect(bodyOf(cloud.sentTo(waId).at(-1))).toBe(
      "Menyu hii imepitwa na wakati. Tafadhali chagua kutoka ile mpya.",
    );
  });

  it("answers a photo in Kiswahili", async () => {
    const person = await customer("sw");
    const waId = person.phone.slice(1);
    await wa.post(inbound(cloud, waId, text("habari")));
    await wa.post(inbound(cloud, waId, { type: "image", image: { id: "1", mime_type: "image/jpeg" } }));
    expect(bodyOf(cloud.sentTo(waId).at(-1))).toBe(
      "Tafadhali andika nambari kutoka kwenye menyu, au 'menu' kuanza upya.",
    );
  });
});
