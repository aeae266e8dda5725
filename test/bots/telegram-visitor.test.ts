import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { chatLinks, customers, paymentIntents } from "../../src/db/schema/index.ts";
import { displayPhone } from "../../src/lib/phone.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import {
  button,
  buttonsOf,
  contactUpdate,
  type Instance,
  lastMenuIn,
  lastShownIn,
  pressUpdate,
  shownIn,
  startFakeTelegram,
  startInstance,
  textUpdate,
} from "./world.ts";

let database: Database;
let fake: Awaited<ReturnType<typeof startFakeTelegram>>;
let bot: Instance;
let ctx: ReturnType<typeof billingContext>["ctx"];
const clock = new FakeClock("2026-04-01T06:00:00Z");
let nextUser = 9_000_000;
let planId: number;

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
  planId = plan.id;
});
afterAll(async () => {
  await fake?.close();
  await database?.close();
});

async function press(chat: number, prefix: string) {
  const menu = lastMenuIn(fake, chat);
  expect(await bot.deliver(pressUpdate(fake, chat, menu.messageId!, button(menu, prefix)))).toBe(200);
}

const intentsOf = (phone: string) =>
  database.db.select().from(paymentIntents).where(eq(paymentIntents.phone, phone));

/** From /start to the voucher's payment prompt, as a visitor. */
async function toVoucherPrompt(chat: number) {
  await bot.deliver(textUpdate(chat, "/start"));
  await press(chat, "1. Buy hotspot voucher");
  await press(chat, "1. Hour");
}

describe("a visitor buying a hotspot voucher on Telegram", () => {
  it("is asked for their own number before the payment prompt, then pays from it", async () => {
    const chat = ++nextUser;
    const phone = uniquePhone();
    await toVoucherPrompt(chat);
    const ask = lastShownIn(fake, chat);
    expect(ask.payload.text).toBe(
      "To pay with M-Pesa we need your phone number: tap the button below to share your own contact.",
    );
    expect(ask.payload.reply_markup).toMatchObject({ keyboard: [[{ request_contact: true }]] });

    // Someone else's number is refused: M-Pesa would prompt a stranger's phone.
    await bot.deliver(contactUpdate(chat, { user_id: chat + 1, phone_number: uniquePhone() }));
    expect(lastShownIn(fake, chat).payload.text).toBe("Please share your own contact, not someone else's.");

    await bot.deliver(contactUpdate(chat, { user_id: chat, phone_number: phone.slice(1) }));
    const prompt = lastShownIn(fake, chat);
    expect(prompt.method).toBe("sendMessage");
    expect(prompt.payload.text).toBe(`Hour: KES 20\nBuy this voucher with M-Pesa ${displayPhone(phone)}?`);
    expect(buttonsOf(prompt)[0]?.text).toBe("1. Confirm");
    expect(await intentsOf(phone)).toEqual([]);

    await press(chat, "1. Confirm");
    expect(lastShownIn(fake, chat).payload.text).toBe(
      "Enter your M-Pesa PIN on the prompt to pay KES 20. Your voucher code will be sent to you.",
    );
    expect(await intentsOf(phone)).toMatchObject([
      { phone, purpose: "voucher", amountCents: 2_000, planId, channel: "telegram", customerId: null },
    ]);
    // A visitor stays a visitor: the number is kept for paying, not as a link to an account.
    expect(
      await database.db
        .select()
        .from(chatLinks)
        .where(and(eq(chatLinks.channel, "telegram"), eq(chatLinks.chatId, String(chat)))),
    ).toEqual([]);

    // The next voucher goes straight to the prompt with the kept number.
    await toVoucherPrompt(chat);
    expect(lastShownIn(fake, chat).payload.text).toContain(displayPhone(phone));
  });

  it("who chose Kiswahili is asked for, and answered about, their phone in Kiswahili", async () => {
    const chat = ++nextUser;
    await bot.deliver(textUpdate(chat, "/start"));
    await press(chat, "3. Language");
    await press(chat, "2. Kiswahili");
    await press(chat, "1. Thibitisha");
    await press(chat, "1. Nunua vocha");
    await press(chat, "1. Hour");
    const ask = lastShownIn(fake, chat);
    expect(ask.payload.text).toMatch(/^Kulipa kwa M-Pesa/);
    expect(ask.payload.reply_markup).toMatchObject({
      keyboard: [[{ text: "Tuma nambari yangu ya simu", request_contact: true }]],
    });

    await bot.deliver(contactUpdate(chat, { user_id: chat + 1, phone_number: uniquePhone() }));
    expect(lastShownIn(fake, chat).payload.text).toBe(
      "Tafadhali tuma nambari yako mwenyewe, si ya mtu mwingine.",
    );
    const before = shownIn(fake, chat).length;
    await bot.deliver(contactUpdate(chat, { user_id: chat, phone_number: uniquePhone().slice(1) }));
    expect(shownIn(fake, chat)[before]!.payload.text).toBe(
      "Hakuna akaunti yenye nambari hii. Bado unaweza kununua vocha.",
    );
  });

  it("typing the confirmation without a number sends no payment prompt anywhere", async () => {
    const chat = ++nextUser;
    await toVoucherPrompt(chat);
    await bot.deliver(textUpdate(chat, "1"));
    expect(lastShownIn(fake, chat).payload.text).not.toMatch(/M-Pesa PIN/);
    expect(await intentsOf("")).toEqual([]);
  });
});

describe("a visitor who becomes a customer", () => {
  it("is linked on their next /start once the phone they shared has an account, and gets notices here", async () => {
    const chat = ++nextUser;
    const phone = uniquePhone();
    await bot.deliver(textUpdate(chat, "/start"));
    await bot.deliver(contactUpdate(chat, { user_id: chat, phone_number: phone }));
    const home = await createPlan(database.db, { priceCents: 100_000, name: "Home 10" });
    const { customer } = await createCustomerWithSubscription(ctx, admin, {
      name: "Amina Wekesa",
      phone,
      planId: home.id,
    });

    await bot.deliver(textUpdate(chat, "/start"));
    expect(buttonsOf(lastMenuIn(fake, chat))[0]?.text).toBe("1. My account");
    expect(lastShownIn(fake, chat).payload.text).not.toContain("share your phone number");
    const links = await database.db
      .select()
      .from(chatLinks)
      .where(eq(chatLinks.chatId, String(chat)));
    expect(links).toMatchObject([{ channel: "telegram", customerId: customer.id }]);
    const [chosen] = await database.db
      .select({ notifyChannel: customers.notifyChannel })
      .from(customers)
      .where(eq(customers.id, customer.id));
    expect(chosen?.notifyChannel).toBe("telegram");
  });

  it("who unlinks that chat stays unlinked: the next /start shows the visitor menu", async () => {
    const chat = ++nextUser;
    const phone = uniquePhone();
    await bot.deliver(textUpdate(chat, "/start"));
    await bot.deliver(contactUpdate(chat, { user_id: chat, phone_number: phone }));
    const home = await createPlan(database.db, { priceCents: 100_000, name: "Home 10" });
    await createCustomerWithSubscription(ctx, admin, { name: "Amina Wekesa", phone, planId: home.id });
    await bot.deliver(textUpdate(chat, "/start"));
    const linksOf = () =>
      database.db
        .select()
        .from(chatLinks)
        .where(eq(chatLinks.chatId, String(chat)));
    expect(await linksOf()).toHaveLength(1);

    await bot.deliver(textUpdate(chat, "/unlink"));
    const ask = lastShownIn(fake, chat);
    expect(await bot.deliver(pressUpdate(fake, chat, ask.messageId!, button(ask, "Unlink")))).toBe(200);
    expect(await linksOf()).toEqual([]);
    await bot.deliver(textUpdate(chat, "/start"));
    // Told "no longer linked", the chat neither shows the account again nor links itself back.
    expect(buttonsOf(lastMenuIn(fake, chat))[0]?.text).toBe("1. Buy hotspot voucher");
    expect(await linksOf()).toEqual([]);
  });
});
