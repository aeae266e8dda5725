import { count, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createChatMenu } from "../../src/bots/chat-menu.ts";
import { type FakeWhatsApp, startFakeWhatsApp } from "../../src/bots/whatsapp-cloud/fake-api.ts";
import { fakeMessage } from "../../src/bots/whatsapp-web/fake-client.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { customers } from "../../src/db/schema/index.ts";
import { createMenuServices } from "../../src/menu/services.ts";
import type { MenuSettings } from "../../src/menu/types.ts";
import { billingContext, createPlan } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { settings, silent } from "../ussd/world.ts";
import {
  bodyOf,
  inbound,
  optionsOf,
  startWhatsApp,
  text,
  type WhatsAppInstance,
} from "./whatsapp-cloud-world.ts";
import { flush, startWorld, type World } from "./whatsapp-web-world.ts";

/**
 * Someone writing on WhatsApp from a number outside the served countries chooses Sign up. WhatsApp
 * gives the sender's own number and no other can be shared there (unlike Telegram's contact
 * button), so they are told sign-up needs a number from a served country, and nothing is created.
 */

let database: Database;
let ctx: ReturnType<typeof billingContext>["ctx"];
let fake: FakeWhatsApp;
let cloud: WhatsAppInstance;
let web: World;
const clock = new FakeClock("2026-06-10T06:00:00Z");
const signupSettings: MenuSettings = { ...settings, signupAreas: [{ name: "Githurai 45", routerId: null }] };

/** A British number, valid but not from Kenya (the default SERVED_COUNTRIES). */
const UK = "447700900123";
const UK_ON_WEB = "447700900456";
const UK_BUYING = "447700900789";

const ANSWER_EN =
  "To sign up you need a phone number from Kenya (+254): M-Pesa pays from it, and the number you are using here is not one. To get connected, call or WhatsApp 0700 123 456.";
const ANSWER_SW =
  "Ili kujisajili unahitaji nambari ya simu ya Kenya (+254): M-Pesa hulipa kutoka kwayo, na nambari unayotumia hapa si mojawapo. Kujiunga, piga simu au tuma WhatsApp 0700 123 456.";

const customerCount = async () => (await database.db.select({ n: count() }).from(customers))[0]!.n;

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  await createPlan(database.db, { name: "Home 10", priceCents: 250_000 });
  await createPlan(database.db, {
    name: "1 Hour",
    kind: "hotspot",
    priceCents: 2_000,
    periodUnit: "hours",
    timeLimitSeconds: 3600,
  });
  fake = await startFakeWhatsApp();
  cloud = startWhatsApp(ctx, fake, { settings: signupSettings });
  web = startWorld(ctx, clock, {
    chatMenu: createChatMenu({
      db: ctx.db,
      services: createMenuServices(ctx, { planCacheMs: 0 }),
      settings: signupSettings,
      logger: silent,
      clock,
    }),
  });
  await flush();
  web.client().login();
});
afterAll(async () => {
  await web?.wa.stop();
  await cloud?.channel.stop();
  await fake?.close();
  await database?.close();
});

describe("sign-up on WhatsApp from a number outside the served countries", () => {
  it("Cloud API: is told, in English and in Kiswahili, that sign-up needs a Kenyan number; nothing is created", async () => {
    const before = await customerCount();
    const say = async (body: string) => {
      await cloud.post(inbound(fake, UK, text(body)));
      return bodyOf(fake.sentTo(UK).at(-1));
    };
    await say("hi");
    expect(await say("2")).toBe(ANSWER_EN);
    // The conversation ends there: nothing to choose, no plan list to go on to.
    expect(optionsOf(fake.sentTo(UK).at(-1))).toEqual([]);

    await say("menu");
    await say("3");
    await say("2");
    expect(await say("1")).toMatch(/Kiswahili/);
    await say("mwanzo");
    expect(await say("2")).toBe(ANSWER_SW);
    expect(await customerCount()).toBe(before);
    expect(
      await database.db
        .select()
        .from(customers)
        .where(eq(customers.phone, `+${UK}`)),
    ).toEqual([]);
  });

  it("WhatsApp Web: is told that sign-up needs a Kenyan number; nothing is created", async () => {
    const before = await customerCount();
    const say = async (body: string) => {
      await web.receive(fakeMessage({ from: `${UK_ON_WEB}@c.us`, body }));
      return (await web.deliver(UK_ON_WEB)).at(-1);
    };
    expect(await say("hi")).toMatch(/\n2\. Sign up\n/);
    expect(await say("2")).toBe(ANSWER_EN);
    expect(await customerCount()).toBe(before);
  });

  it("is told that vouchers are paid from a Kenyan number, not offered a prompt to no phone", async () => {
    const say = async (body: string) => {
      await cloud.post(inbound(fake, UK_BUYING, text(body)));
      return fake.sentTo(UK_BUYING).at(-1);
    };
    await say("hi");
    const answer = await say("1");
    expect(bodyOf(answer)).toBe(
      "Vouchers are paid with M-Pesa from a phone number from Kenya (+254), and the number you are using here is not one. Connect to the hotspot's Wi-Fi to buy one on its page.",
    );
    expect(optionsOf(answer)).toEqual([]);
  });
});
