import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { sellVoucherInTx } from "../../src/billing/vouchers.ts";
import { FakeClock, HOUR } from "../../src/clock.ts";
import { type Database, queryRows } from "../../src/db/client.ts";
import { displayPhone } from "../../src/lib/phone.ts";
import { admin, billingContext, createPlan, job, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import {
  button,
  buttonsOf,
  contactUpdate,
  type Instance,
  lastMenuIn,
  lastShownIn,
  pressUpdate,
  startFakeTelegram,
  startInstance,
  textUpdate,
} from "./world.ts";

let database: Database;
let fake: Awaited<ReturnType<typeof startFakeTelegram>>;
let bot: Instance;
let ctx: ReturnType<typeof billingContext>["ctx"];
const clock = new FakeClock("2026-04-01T06:00:00Z");
let nextUser = 9_500_000;
let hourPlanId: number;

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  fake = await startFakeTelegram();
  bot = startInstance(ctx, fake);
  const plan = await createPlan(database.db, {
    kind: "hotspot",
    name: "Hour",
    priceCents: 2_000,
    periodUnit: "hours",
    periodCount: 1,
  });
  hourPlanId = plan.id;
});
afterAll(async () => {
  await fake?.close();
  await database?.close();
});

async function press(chat: number, prefix: string) {
  const menu = lastMenuIn(fake, chat);
  expect(await bot.deliver(pressUpdate(fake, chat, menu.messageId!, button(menu, prefix)))).toBe(200);
}

/** A code sold to `phone` as an M-Pesa payment for it sells one (the same use-case). */
async function sold(phone: string) {
  const voucher = await database.db.transaction((tx) =>
    sellVoucherInTx(tx, ctx, job, { planId: hourPlanId, phone, language: "en" }),
  );
  return voucher.code;
}

const written = async () =>
  (
    await queryRows(
      database.db,
      sql`select (select count(*) from payment_intents)::int as intents,
                 (select count(*) from message_outbox where channel = 'sms')::int as sms`,
    )
  )[0];

describe("my voucher codes, on Telegram", () => {
  it("asks a visitor for their own number first, then shows the codes bought with it", async () => {
    const chat = ++nextUser;
    const phone = uniquePhone();
    // Bought at 09:00 Nairobi time, for an hour.
    const code = await sold(phone);
    const before = await written();

    await bot.deliver(textUpdate(chat, "/start"));
    await press(chat, "1. Buy hotspot voucher");
    expect(buttonsOf(lastMenuIn(fake, chat)).map((b) => b.text)).toEqual([
      "1. Hour: KES 20",
      "2. My voucher codes",
      "Back",
    ]);
    await press(chat, "2. My voucher codes");
    const ask = lastShownIn(fake, chat);
    expect(ask.payload.text).toBe(
      "To find the voucher codes bought with your number we need it: tap the button below to share your own contact.",
    );
    expect(ask.payload.reply_markup).toMatchObject({ keyboard: [[{ request_contact: true }]] });

    await bot.deliver(contactUpdate(chat, { user_id: chat, phone_number: phone.slice(1) }));
    const list = lastMenuIn(fake, chat);
    expect(list.payload.text).toBe("Your voucher codes:");
    expect(buttonsOf(list).map((b) => b.text)).toEqual([
      `1. ${code}: Hour, until 1 Apr 2026 10:00`,
      "Back",
      "Home",
    ]);
    await press(chat, `1. ${code}`);
    expect(lastShownIn(fake, chat).payload.text).toBe(
      `Voucher code: ${code}\nHour, valid until 1 Apr 2026 10:00.\nUse it as username and password on the hotspot.`,
    );
    expect(await written()).toEqual(before);

    // Once the hour is over the code works no more, and is not offered.
    clock.advance(2 * HOUR);
    await bot.deliver(textUpdate(chat, "/start"));
    await press(chat, "1. Buy hotspot voucher");
    await press(chat, "2. My voucher codes");
    expect(lastShownIn(fake, chat).payload.text).toBe(
      `No voucher bought with ${displayPhone(phone)} in the last 31 days is still valid.`,
    );
  });

  it("shows a visitor who shared another number none of them", async () => {
    const buyer = uniquePhone();
    await sold(buyer);
    const chat = ++nextUser;
    const phone = uniquePhone();
    await bot.deliver(textUpdate(chat, "/start"));
    await bot.deliver(contactUpdate(chat, { user_id: chat, phone_number: phone }));
    await press(chat, "1. Buy hotspot voucher");
    await press(chat, "2. My voucher codes");
    expect(lastShownIn(fake, chat).payload.text).toBe(
      `No voucher bought with ${displayPhone(phone)} in the last 31 days is still valid.`,
    );
  });

  it("shows a linked customer the codes bought with the account's phone", async () => {
    const home = await createPlan(database.db, { priceCents: 100_000, name: "Home 10" });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Amina Wekesa",
      phone: uniquePhone(),
      planId: home.id,
    });
    const code = await sold(customer.phone);
    const chat = ++nextUser;
    await bot.deliver(contactUpdate(chat, { user_id: chat, phone_number: customer.phone }));
    await press(chat, "3. Buy hotspot voucher");
    await press(chat, "2. My voucher codes");
    expect(buttonsOf(lastMenuIn(fake, chat))[0]?.text).toMatch(new RegExp(`^1\\. ${code}: Hour, until `));
  });
});
