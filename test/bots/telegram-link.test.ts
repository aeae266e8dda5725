import { Writable } from "node:stream";
import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { LINK_CODE_TEMPLATE } from "../../src/bots/telegram/link-code.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { chatLinkCodes, chatLinks, messageOutbox } from "../../src/db/schema/index.ts";
import { createLogger } from "../../src/logger.ts";
import { renderSms } from "../../src/messaging/render.ts";
import { openSecrets } from "../../src/messaging/sms-worker.ts";
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
  startFakeTelegram,
  startInstance,
  textsIn,
  textUpdate,
} from "./world.ts";

let database: Database;
let fake: Awaited<ReturnType<typeof startFakeTelegram>>;
let bot: Instance;
let ctx: ReturnType<typeof billingContext>["ctx"];
const clock = new FakeClock("2026-04-01T06:00:00Z");
let nextUser = 8_000_000;
/** Everything the bot logged, at every level: a code must never be in it. */
const logged: string[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  fake = await startFakeTelegram();
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logged.push(String(chunk));
      done();
    },
  });
  bot = startInstance(ctx, fake, createLogger("trace", sink));
});
afterAll(async () => {
  await fake?.close();
  await database?.close();
});

async function customer() {
  const plan = await createPlan(database.db, { priceCents: 150_000, name: "Fibre 1500" });
  const created = await createCustomerWithSubscription(ctx, admin, {
    name: "Achieng Otieno",
    phone: uniquePhone(),
    planId: plan.id,
  });
  return created.customer;
}

/** The newest link code SMS to `phone`, read from the outbox as the SMS worker would. */
async function smsCode(phone: string) {
  const rows = await database.db.select().from(messageOutbox).where(eq(messageOutbox.recipient, phone));
  const sms = rows.filter((r) => r.template === LINK_CODE_TEMPLATE).at(-1);
  if (!sms) throw new Error(`no link code SMS to ${phone}`);
  // Sealed in the outbox as a password is: the SMS worker opens it to send.
  return { code: String(openSecrets(sms.template, sms.params).code), count: rows.length, row: sms };
}

const otherCode = (code: string) => String((Number(code) + 1) % 1_000_000).padStart(6, "0");

async function linksOf(chat: number) {
  return database.db
    .select()
    .from(chatLinks)
    .where(and(eq(chatLinks.channel, "telegram"), eq(chatLinks.chatId, String(chat))));
}

async function codeRow(chat: number) {
  const [row] = await database.db
    .select()
    .from(chatLinkCodes)
    .where(and(eq(chatLinkCodes.channel, "telegram"), eq(chatLinkCodes.chatId, String(chat))));
  return row;
}

const say = async (chat: number, text: string) => expect(await bot.deliver(textUpdate(chat, text))).toBe(200);
const lastText = (chat: number) => lastShownIn(fake, chat).payload.text;

describe("linking a Telegram chat by account number and SMS code", () => {
  it("sends a code by SMS, keeps only its hash, and the right code links the chat", async () => {
    const chat = ++nextUser;
    const person = await customer();
    await say(chat, `/link ${person.accountNumber.toLowerCase()}`);
    expect(lastText(chat)).toBe(
      `We sent a 6-digit code by SMS to the phone of account ${person.accountNumber} (ending ${person.phone.slice(-3)}). Type it here within 10 minutes.`,
    );
    const { code, row: sms } = await smsCode(person.phone);
    expect(code).toMatch(/^\d{6}$/);
    expect(JSON.stringify(sms.params)).not.toContain(code);
    const params = openSecrets(sms.template, sms.params);
    expect(renderSms(sms.language, sms.template, params, { isp: "Kibera Net" })).toContain(code);
    const stored = await codeRow(chat);
    expect(stored).toMatchObject({ customerId: person.id, attempts: 0, usedAt: null });
    expect(stored?.codeHash).toMatch(/^[0-9a-f]{64}$/);
    expect(stored?.codeHash).not.toContain(code);
    expect(stored?.expiresAt.getTime()).toBe(clock.now().getTime() + 10 * 60_000);

    await say(chat, code);
    expect(await linksOf(chat)).toMatchObject([{ customerId: person.id, method: "otp" }]);
    expect(textsIn(fake, chat)).toContain(`Linked to account ${person.accountNumber}.`);
    expect(buttonsOf(lastMenuIn(fake, chat))[0]?.text).toBe("1. My account");
    expect((await codeRow(chat))?.usedAt).toEqual(clock.now());
    // At trace level: whatever the bot logs now or later, the code is not in it.
    expect(logged.join("")).not.toContain(code);
  });

  it("counts a wrong code as an attempt; the right one still links", async () => {
    const chat = ++nextUser;
    const person = await customer();
    await say(chat, `/link ${person.accountNumber}`);
    const { code } = await smsCode(person.phone);
    await say(chat, otherCode(code));
    expect(lastText(chat)).toBe("That code is not right. 4 tries left.");
    expect((await codeRow(chat))?.attempts).toBe(1);
    expect(await linksOf(chat)).toEqual([]);
    await say(chat, code);
    expect(await linksOf(chat)).toMatchObject([{ customerId: person.id, method: "otp" }]);
  });

  it("refuses an expired code and links nothing", async () => {
    const chat = ++nextUser;
    const person = await customer();
    await say(chat, `/link ${person.accountNumber}`);
    const { code } = await smsCode(person.phone);
    clock.advance(10 * 60_000);
    await say(chat, code);
    expect(lastText(chat)).toBe("That code has expired. Send /link with your account number for a new one.");
    expect(await linksOf(chat)).toEqual([]);
    expect(await codeRow(chat)).toBeUndefined();
  });

  it("after five wrong codes even the right one links nothing", async () => {
    const chat = ++nextUser;
    const person = await customer();
    await say(chat, `/link ${person.accountNumber}`);
    const { code } = await smsCode(person.phone);
    for (let i = 0; i < 5; i++) await say(chat, otherCode(code));
    expect(textsIn(fake, chat).slice(-2)).toEqual([
      "That code is not right. 1 try left.",
      "Too many wrong codes. Send /link with your account number for a new one.",
    ]);
    await say(chat, code);
    expect(await linksOf(chat)).toEqual([]);
    expect(lastText(chat)).not.toMatch(/^Linked/);
  });

  it("answers an unknown account, a bare /link, and a second request within a minute", async () => {
    const chat = ++nextUser;
    const person = await customer();
    await say(chat, "/link TN-NOPE");
    expect(lastText(chat)).toBe("No account has that number. Check it and send /link again.");
    await say(chat, "/link");
    expect(lastText(chat)).toMatch(/^To link this chat to your account, send \/link/);
    await say(chat, `/link ${person.accountNumber}`);
    const first = await smsCode(person.phone);
    clock.advance(30_000);
    await say(chat, `/link ${person.accountNumber}`);
    expect(lastText(chat)).toBe(
      "A code was sent a moment ago. Please wait a minute before asking for another.",
    );
    expect((await smsCode(person.phone)).count).toBe(first.count);
    // After the wait a new code replaces the old one.
    clock.advance(31_000);
    await say(chat, `/link ${person.accountNumber}`);
    const second = await smsCode(person.phone);
    expect(second.count).toBe(first.count + 1);
    if (second.code !== first.code) {
      await say(chat, first.code);
      expect(await linksOf(chat)).toEqual([]);
    }
    await say(chat, second.code);
    expect(await linksOf(chat)).toMatchObject([{ customerId: person.id }]);
  });
});

describe("link codes asked for again and again", () => {
  const linkCodesTo = async (phone: string) =>
    (await database.db.select().from(messageOutbox).where(eq(messageOutbox.recipient, phone))).filter(
      (r) => r.template === LINK_CODE_TEMPLATE,
    );

  it("wait a minute even after five wrong guesses used the last one up", async () => {
    const chat = ++nextUser;
    const person = await customer();
    // A script: /link, five guesses, /link again, ... each round would be an SMS to the customer.
    for (let round = 0; round < 10; round++) {
      await say(chat, `/link ${person.accountNumber}`);
      for (let guess = 0; guess < 5; guess++) await say(chat, String(100_000 + round * 5 + guess));
      clock.advance(10_000);
    }
    expect(await linkCodesTo(person.phone)).toHaveLength(2);
  });

  it("reach one account's phone three times an hour, whatever the number of chats asking", async () => {
    const person = await customer();
    for (let i = 0; i < 3; i++) await say(++nextUser, `/link ${person.accountNumber}`);
    const chat = ++nextUser;
    await say(chat, `/link ${person.accountNumber}`);
    expect(lastText(chat)).toBe(
      "Several codes were sent to that account's phone in the last hour. Please try again in an hour.",
    );
    expect(await codeRow(chat)).toBeUndefined();
    for (let i = 0; i < 16; i++) await say(++nextUser, `/link ${person.accountNumber}`);
    expect(await linkCodesTo(person.phone)).toHaveLength(3);

    clock.advance(60 * 60_000);
    await say(chat, `/link ${person.accountNumber}`);
    expect(await linkCodesTo(person.phone)).toHaveLength(4);
  });

  it("from one chat are five a day, refused in the chat's language", async () => {
    const chat = ++nextUser;
    const [first, second] = [await customer(), await customer()];
    await say(chat, "/start");
    await database.db.execute(
      sql`update chat_sessions set language = 'sw' where channel = 'telegram' and chat_id = ${String(chat)}`,
    );
    for (const person of [first, second, first, second, first]) {
      await say(chat, `/link ${person.accountNumber}`);
      expect(lastText(chat)).toMatch(/^Tumetuma nambari/);
      clock.advance(61_000);
    }
    await say(chat, `/link ${second!.accountNumber}`);
    expect(lastText(chat)).toBe("Gumzo hili limeomba nambari nyingi mno leo. Tafadhali jaribu tena kesho.");
    expect(await linkCodesTo(second!.phone)).toHaveLength(2);
    // The refusal took no room: the other account can still be asked for from another chat.
    await say(++nextUser, `/link ${second!.accountNumber}`);
    expect(await linkCodesTo(second!.phone)).toHaveLength(3);
  });
});

describe("unlinking", () => {
  it("/unlink asks first; its button unlinks once and the chat is a visitor again", async () => {
    const chat = ++nextUser;
    const person = await customer();
    await say(chat, "/unlink");
    expect(lastText(chat)).toBe("This chat is not linked to an account.");

    await say(chat, `/link ${person.accountNumber}`);
    await say(chat, (await smsCode(person.phone)).code);
    await say(chat, "/unlink");
    const ask = lastShownIn(fake, chat);
    expect(ask.payload.text).toBe(
      `Unlink this chat from account ${person.accountNumber}? You can link it again later.`,
    );
    const press = pressUpdate(fake, chat, ask.messageId!, button(ask, "Unlink"));
    expect(await bot.deliver(press)).toBe(200);
    expect(await linksOf(chat)).toEqual([]);
    expect(fake.message(ask.messageId!)?.text).toBe(
      `This chat is no longer linked to account ${person.accountNumber}.`,
    );
    await say(chat, "2");
    expect(buttonsOf(lastMenuIn(fake, chat))[0]?.text).toBe("1. Buy hotspot voucher");

    // Pressed again (or Telegram redelivering it): nothing left to undo, and it says so.
    const calls = fake.calls.length;
    expect(await bot.deliver({ ...press, update_id: press.update_id + 100_000 })).toBe(200);
    expect(fake.calls.slice(calls)).toEqual([
      { method: "answerCallbackQuery", payload: expect.objectContaining({ text: "Already done." }) },
    ]);
  });
  it("an old Unlink button does not undo the link to another account made since", async () => {
    const chat = ++nextUser;
    const first = await customer();
    const second = await customer();
    await say(chat, `/link ${first.accountNumber}`);
    await say(chat, (await smsCode(first.phone)).code);
    await say(chat, "/unlink");
    const ask = lastShownIn(fake, chat);
    // Not pressed: the person shares their own contact, the second account's number, instead.
    await bot.deliver(contactUpdate(chat, { user_id: chat, phone_number: second.phone }));
    expect((await linksOf(chat)).map((l) => l.customerId)).toEqual([second.id]);
    const calls = fake.calls.length;
    expect(await bot.deliver(pressUpdate(fake, chat, ask.messageId!, button(ask, "Unlink")))).toBe(200);
    expect((await linksOf(chat)).map((l) => l.customerId)).toEqual([second.id]);
    expect(fake.calls.slice(calls)).toEqual([
      { method: "answerCallbackQuery", payload: expect.objectContaining({ text: "Already done." }) },
    ]);
  });

  it("an Unlink button of the older kind (no account in it) asks again and unlinks nothing", async () => {
    const chat = ++nextUser;
    const person = await customer();
    await say(chat, `/link ${person.accountNumber}`);
    await say(chat, (await smsCode(person.phone)).code);
    await say(chat, "/unlink");
    const ask = lastShownIn(fake, chat);
    const [link] = await linksOf(chat);
    expect(await bot.deliver(pressUpdate(fake, chat, ask.messageId!, `u:${link!.id}`))).toBe(200);
    expect(await linksOf(chat)).toHaveLength(1);
    const again = lastShownIn(fake, chat);
    expect(again.messageId).not.toBe(ask.messageId);
    expect(again.payload.text).toBe(
      `Unlink this chat from account ${person.accountNumber}? You can link it again later.`,
    );
  });

  it("unlinks by its button a link whose id passes 999,999,999", async () => {
    // Links are made and undone often; their ids are `integer`, up to 2,147,483,647.
    await database.db.execute(sql`alter table chat_links alter column id restart with 2000000000`);
    const chat = ++nextUser;
    const person = await customer();
    await say(chat, `/link ${person.accountNumber}`);
    await say(chat, (await smsCode(person.phone)).code);
    const [link] = await linksOf(chat);
    expect(link!.id).toBeGreaterThan(999_999_999);
    await say(chat, "/unlink");
    const ask = lastShownIn(fake, chat);
    expect(await bot.deliver(pressUpdate(fake, chat, ask.messageId!, button(ask, "Unlink")))).toBe(200);
    expect(await linksOf(chat)).toEqual([]);
    expect(fake.message(ask.messageId!)?.text).toBe(
      `This chat is no longer linked to account ${person.accountNumber}.`,
    );
  });
});
