import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DAY, FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { customers, routers, vouchers } from "../../src/db/schema/index.ts";
import type { MenuSettings } from "../../src/menu/types.ts";
import { billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { settings } from "../ussd/world.ts";
import {
  CHANNELS,
  type ChannelName,
  type Driver,
  type Snapshot,
  snapshotOf,
  startDriver,
} from "./cross-channel-world.ts";

/**
 * The same conversation, typed digit for digit, on USSD, Telegram, WhatsApp Web and the WhatsApp
 * Cloud API: a stranger signs up for a home plan, pays the first invoice by M-Pesa, upgrades their
 * plan (paid by M-Pesa), buys a hotspot voucher and switches to Kiswahili. Whatever the channel,
 * the database must end up the same for that customer.
 */

let database: Database;
const START = "2026-06-01T06:00:00Z";
const snapshots = new Map<ChannelName, Snapshot>();
let menuSettings: MenuSettings;

beforeAll(async () => {
  database = await createTestDatabase();
  const [router] = await database.db
    .insert(routers)
    .values({ name: "kahawa", host: "kahawa.example", port: 8728, username: "api", passwordEncrypted: "x" })
    .returning({ id: routers.id });
  menuSettings = {
    ...settings,
    signupAreas: [
      { name: "Kahawa West", routerId: router!.id },
      { name: "Roysambu", routerId: null },
    ],
  };
  // The same plans for every channel: two home plans (sign up on the first, upgrade to the second)
  // and one hotspot voucher.
  await createPlan(database.db, { name: "Basic 5", priceCents: 100_000 });
  await createPlan(database.db, { name: "Fast 20", priceCents: 250_000 });
  await createPlan(database.db, {
    name: "1 Hour",
    kind: "hotspot",
    priceCents: 2_000,
    periodUnit: "hours",
    timeLimitSeconds: 3600,
  });
});
afterAll(async () => {
  await database?.close();
});

describe.each(CHANNELS)("the same conversation on %s", (channel) => {
  let driver: Driver;
  let clock: FakeClock;
  let account: string;

  beforeAll(async () => {
    clock = new FakeClock(START);
    const { ctx } = billingContext(database.db, clock);
    driver = await startDriver(channel, {
      ctx,
      clock,
      db: database.db,
      settings: menuSettings,
      phone: uniquePhone(),
    });
  });
  afterAll(async () => {
    await driver?.close();
  });

  it("signs a stranger up: plan, name, area, confirm", async () => {
    expect(await driver.begin()).toMatch(/Buy hotspot voucher[\s\S]*Sign up[\s\S]*Language/);
    expect(await driver.say("2")).toContain("Sign up: choose a home internet plan");
    expect(await driver.say("1")).toContain("Type your full name:");
    expect(await driver.say("Amina Wekesa")).toMatch(/Choose your area:[\s\S]*Kahawa West[\s\S]*Roysambu/);
    expect(await driver.say("1")).toMatch(/Sign up Amina Wekesa in Kahawa West\?[\s\S]*Basic 5: KES 1,000/);
    const done = await driver.say("1");
    account = /Welcome! Your account is (\w+)\./.exec(done)?.[1] ?? "";
    expect(done, done).toContain("Pay KES 1,000 by M-Pesa");
    const [customer] = await database.db.select().from(customers).where(eq(customers.phone, driver.phone));
    expect(customer?.accountNumber).toBe(account);
  });

  it("pays the first invoice by M-Pesa; the account is credited and the plan activated", async () => {
    expect(await driver.begin()).toMatch(/My account[\s\S]*Pay[\s\S]*Change plan/);
    expect(await driver.say("2")).toContain("You owe KES 1,000.");
    expect(await driver.say("1")).toContain("Enter your M-Pesa PIN on the prompt to pay KES 1,000.");
    const received = await driver.settle();
    expect(received.join("\n")).toMatch(
      new RegExp(`We received KES 1,000 \\(M-Pesa \\w+\\) for account ${account}`),
    );
    expect(await driver.begin()).toMatch(/My account/);
    expect(await driver.say("1")).toMatch(/Plan: Basic 5[\s\S]*Status: Active/);
  });

  it("upgrades the plan ten days later, paying the rest of the period by M-Pesa", async () => {
    clock.advance(10 * DAY);
    await driver.begin();
    expect(await driver.say("4")).toContain("Now on Basic 5. Choose a new plan:");
    expect(await driver.say("1")).toMatch(/Fast 20: KES 2,500[\s\S]*Change now\. Pay KES [\d,]+/);
    expect(await driver.say("1")).toContain("Enter your M-Pesa PIN on the prompt to pay KES");
    expect((await driver.settle()).join("\n")).toContain("Your plan is now Fast 20");
  });

  it("buys a hotspot voucher; its code reaches the person", async () => {
    await driver.begin();
    expect(await driver.say("3")).toMatch(/Choose a hotspot voucher:[\s\S]*1 Hour: KES 20/);
    expect(await driver.say("1")).toContain("Buy this voucher with M-Pesa");
    expect(await driver.say("1")).toContain("Your voucher code");
    const received = (await driver.settle()).join("\n");
    const code = /voucher code is ([A-Z0-9]+)/.exec(received)?.[1];
    expect(code, received).toBeTruthy();
    const [voucher] = await database.db.select().from(vouchers).where(eq(vouchers.code, code!));
    expect(voucher).toMatchObject({ status: "sold", soldToPhone: driver.phone });
  });

  it("switches to Kiswahili", async () => {
    await driver.begin();
    expect(await driver.say("5")).toContain("Choose language / Chagua lugha");
    expect(await driver.say("2")).toContain("Tumia Kiswahili kwa menyu");
    expect(await driver.say("1")).toContain("Lugha imewekwa kuwa Kiswahili.");
    expect(await driver.begin()).toMatch(/Akaunti yangu/);
    snapshots.set(channel, await snapshotOf(database.db, driver.phone));
  });
});

describe("every channel", () => {
  it("leaves the customer's records exactly as USSD does", () => {
    const ussd = snapshots.get("ussd");
    expect(ussd).toBeDefined();
    // The script did what it says: signed up, paid, upgraded (two thirds of the KES 1,500 difference
    // for the 20 days left), bought a voucher, and switched to Kiswahili.
    expect(ussd).toMatchObject({
      customer: { name: "Amina Wekesa", language: "sw", status: "active" },
      subscriptions: [{ plan: "Fast 20", nextPlan: null, status: "active", router: "kahawa" }],
      balanceCents: 0,
      invoices: [
        { kind: "recurring", status: "paid", amountCents: 100_000 },
        { kind: "proration", status: "paid", amountCents: 100_000 },
      ],
      intents: [
        { purpose: "balance", status: "succeeded", amountCents: 100_000 },
        { purpose: "plan_change", status: "succeeded", amountCents: 100_000, plan: "Fast 20" },
        { purpose: "voucher", status: "succeeded", amountCents: 2_000, plan: "1 Hour" },
      ],
      vouchersSold: [{ plan: "1 Hour", status: "sold" }],
      notices: { "payment_received:done": 2, "voucher_code:done": 1 },
    });
    for (const channel of CHANNELS)
      expect({ channel, ...snapshots.get(channel) }).toEqual({ channel, ...ussd });
  });
});
