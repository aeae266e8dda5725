import { and, eq } from "drizzle-orm";
import { Api, GrammyError } from "grammy";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import type { FakeTelegram } from "../../src/bots/telegram/fake-api.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { chatLinks, chatSessions } from "../../src/db/schema/index.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import {
  button,
  buttonsOf,
  contactUpdate,
  type Instance,
  lastMenuIn,
  makeBot,
  pressUpdate,
  startFakeTelegram,
  startInstance,
  startTelegramWorker,
  textUpdate,
} from "./world.ts";

let database: Database;
let fake: FakeTelegram;
let bot: Instance;
let ctx: ReturnType<typeof billingContext>["ctx"];
const clock = new FakeClock("2026-04-01T06:00:00Z");
let nextUser = 7_000_000;

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  fake = await startFakeTelegram();
  bot = startInstance(ctx, fake);
});
afterAll(async () => {
  await fake?.close();
  await database?.close();
});

/** The newest message the bot sent or edited in `chat`. */
function lastShown(chat: number) {
  const shown = fake.calls.filter(
    (c) => (c.method === "sendMessage" || c.method === "editMessageText") && c.payload.chat_id === chat,
  );
  const last = shown.at(-1);
  if (!last) throw new Error(`nothing shown in ${chat}`);
  return last;
}

/** The newest message with menu buttons in `chat` (the link hint has none). */
function lastMenu(chat: number) {
  const menus = fake.calls.filter(
    (c) =>
      (c.method === "sendMessage" || c.method === "editMessageText") &&
      c.payload.chat_id === chat &&
      buttonsOf(c).length > 0,
  );
  const last = menus.at(-1);
  if (!last) throw new Error(`no menu in ${chat}`);
  return last;
}

async function press(chat: number, prefix: string, instance = bot) {
  const menu = lastMenu(chat);
  expect(await instance.deliver(pressUpdate(fake, chat, menu.messageId!, button(menu, prefix)))).toBe(200);
}

async function session(chat: number) {
  const [row] = await database.db
    .select()
    .from(chatSessions)
    .where(and(eq(chatSessions.channel, "telegram"), eq(chatSessions.chatId, String(chat))));
  return row;
}

async function customer() {
  const plan = await createPlan(database.db, { priceCents: 150_000, name: "Fibre 1500" });
  const created = await createCustomerWithSubscription(ctx, admin, {
    name: "Achieng Otieno",
    phone: uniquePhone(),
    planId: plan.id,
  });
  return created.customer;
}

describe("Telegram self-service through the Bot API fake and the webhook", () => {
  it("/start shows the main menu with buttons, and a visitor is offered to share their contact", async () => {
    const chat = ++nextUser;
    expect(await bot.deliver(textUpdate(chat, "/start"))).toBe(200);
    const menu = lastMenu(chat);
    expect(menu.payload.text).toBe("Kibera Net");
    expect(buttonsOf(menu).map((b) => b.text)).toEqual([
      "1. Buy hotspot voucher",
      "2. How to sign up",
      "3. Language",
      "4. Help",
    ]);
    expect(button(menu, "1.")).toMatch(/^m:\d+:1$/);
    const hint = lastShown(chat);
    expect(hint.payload.reply_markup).toMatchObject({ keyboard: [[{ request_contact: true }]] });
  });

  it("links by the sender's own contact; 'My account' then shows the customer's account", async () => {
    const chat = ++nextUser;
    const person = await customer();
    await bot.deliver(textUpdate(chat, "/start"));
    // Telegram may send the number without its `+`.
    await bot.deliver(contactUpdate(chat, { user_id: chat, phone_number: person.phone.slice(1) }));
    const links = await database.db
      .select()
      .from(chatLinks)
      .where(eq(chatLinks.chatId, String(chat)));
    expect(links).toMatchObject([{ channel: "telegram", customerId: person.id, method: "contact" }]);
    expect(
      fake
        .callsOf("sendMessage")
        .some((c) => c.payload.text === `Linked to account ${person.accountNumber}.`),
    ).toBe(true);
    expect(buttonsOf(lastMenu(chat))[0]?.text).toBe("1. My account");

    await press(chat, "1. My account");
    const account = lastShown(chat);
    expect(account.method).toBe("editMessageText");
    expect(account.payload.text).toBe(
      "Plan: Fibre 1500\nStatus: Awaiting first payment\nAmount due: KES 1,500\nNo payment yet",
    );
    expect(buttonsOf(account).map((b) => b.text)).toEqual(["Back"]);
  });

  it("refuses someone else's contact and links nothing", async () => {
    const chat = ++nextUser;
    const person = await customer();
    await bot.deliver(contactUpdate(chat, { user_id: chat + 1, phone_number: person.phone }));
    expect(lastShown(chat).payload.text).toBe("Please share your own contact, not someone else's.");
    expect(
      await database.db
        .select()
        .from(chatLinks)
        .where(eq(chatLinks.chatId, String(chat))),
    ).toEqual([]);
  });

  it("follows a path by typed number and by button", async () => {
    const chat = ++nextUser;
    await bot.deliver(textUpdate(chat, "hi"));
    await bot.deliver(textUpdate(chat, "4"));
    const help = lastMenu(chat);
    expect(help.payload.text).toBe(
      "Help: call or WhatsApp 0700 123 456. You can buy a hotspot voucher here with M-Pesa.",
    );
    expect(buttonsOf(help).map((b) => b.text)).toEqual(["Back"]);
    await press(chat, "Back");
    expect(buttonsOf(lastShown(chat))[0]?.text).toBe("1. Buy hotspot voucher");
    await press(chat, "3. Language");
    expect(buttonsOf(lastShown(chat)).map((b) => b.text)).toEqual(["1. English", "2. Kiswahili", "Back"]);
  });

  it("answers a stale button politely and changes nothing", async () => {
    const chat = ++nextUser;
    await bot.deliver(textUpdate(chat, "/start"));
    const home = lastMenu(chat);
    const old = pressUpdate(fake, chat, home.messageId!, button(home, "4. Help"));
    await press(chat, "3. Language");
    const before = await session(chat);
    const calls = fake.calls.length;

    expect(await bot.deliver(old)).toBe(200);
    expect(fake.calls.slice(calls)).toEqual([
      {
        method: "answerCallbackQuery",
        payload: expect.objectContaining({ text: "This menu is out of date: use the newest one below." }),
      },
    ]);
    expect(await session(chat)).toEqual(before);
  });

  it("refuses a webhook call without the secret token, changing nothing", async () => {
    const chat = ++nextUser;
    const calls = fake.calls.length;
    expect(await bot.deliver(textUpdate(chat, "/start"), null)).toBe(401);
    expect(await bot.deliver(textUpdate(chat, "/start"), "not-the-secret-token")).toBe(401);
    expect(fake.calls.length).toBe(calls);
    expect(await session(chat)).toBeUndefined();
  });

  it("keeps the conversation across a restart: another instance takes the next press", async () => {
    const chat = ++nextUser;
    await bot.deliver(textUpdate(chat, "/start"));
    await press(chat, "3. Language");
    const restarted = startInstance(ctx, fake);
    await press(chat, "2. Kiswahili", restarted);
    const confirm = lastShown(chat);
    expect(confirm.payload.text).toBe("Tumia Kiswahili kwa menyu na jumbe?");
    expect(buttonsOf(confirm).map((b) => b.text)).toEqual(["1. Thibitisha", "Rudi", "Mwanzo"]);
    expect((await session(chat))?.inputs).toEqual(["3", "2"]);
    // The first instance reads the same state: it keeps nothing of its own.
    await press(chat, "1. Thibitisha");
    expect((await session(chat))?.language).toBe("sw");
    expect(buttonsOf(lastShown(chat))[0]?.text).toBe("1. Nunua vocha ya hotspot");
    // Kept with the chat: a new conversation is in Kiswahili too.
    await bot.deliver(textUpdate(chat, "/start"));
    expect(buttonsOf(lastMenuIn(fake, chat))[0]?.text).toBe("1. Nunua vocha ya hotspot");
  });

  it("an idle conversation starts over at the main menu", async () => {
    const chat = ++nextUser;
    await bot.deliver(textUpdate(chat, "/start"));
    await press(chat, "3. Language");
    clock.advance(11 * 60_000);
    await bot.deliver(textUpdate(chat, "2"));
    expect(buttonsOf(lastShown(chat))[0]?.text).toBe("1. Buy hotspot voucher");
    expect((await session(chat))?.inputs).toEqual([]);
  });

  it("a button pressed on a screen left idle shows the main menu, without choosing anything", async () => {
    const chat = ++nextUser;
    await bot.deliver(textUpdate(chat, "/start"));
    await press(chat, "3. Language");
    clock.advance(11 * 60_000);
    await press(chat, "2. Kiswahili");
    expect(buttonsOf(lastShown(chat))[0]?.text).toBe("1. Buy hotspot voucher");
    expect((await session(chat))?.inputs).toEqual([]);
    expect((await session(chat))?.language ?? "en").toBe("en");
  });
});

describe("the Bot API fake", () => {
  it("refuses a wrong token with 401 and answers 429 with retry_after on demand", async () => {
    const wrong = await fetch(`${fake.apiRoot}/bot1:wrong/getMe`, { method: "POST" });
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toMatchObject({ ok: false, error_code: 401 });

    // A bare client: the bot's own retries 429s (see telegram-ops.test.ts).
    const api = new Api(fake.token, { apiRoot: fake.apiRoot });
    fake.failNext("sendMessage", 3);
    const error = await api.sendMessage(1, "hello").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GrammyError);
    expect((error as GrammyError).error_code).toBe(429);
    expect((error as GrammyError).parameters.retry_after).toBe(3);
    await expect(api.sendMessage(1, "hello")).resolves.toMatchObject({ text: "hello" });
  });

  it("answers a JSON call handed to it without HTTP as its route does (a load generator's server)", async () => {
    expect(await fake.callJson("/bot1:wrong/sendMessage", '{"chat_id":1,"text":"hi"}')).toMatchObject({
      status: 401,
    });
    expect((await fake.callJson(`/bot${fake.token}/sendMessage`, "{not json")).status).toBe(400);
    const empty = await fake.callJson(`/bot${fake.token}/sendMessage`, '{"chat_id":1,"text":" "}');
    expect(empty.status).toBe(400);
    expect(JSON.parse(empty.body)).toMatchObject({ description: "Bad Request: message text is empty" });
    const sent = await fake.callJson(`/bot${fake.token}/sendMessage`, '{"chat_id":77001,"text":"Habari"}');
    expect(sent.status).toBe(200);
    const { result } = JSON.parse(sent.body) as { result: { message_id: number } };
    expect(fake.message(result.message_id)).toMatchObject({ text: "Habari", chat: { id: 77001 } });
    expect(fake.callsOf("sendMessage").at(-1)?.payload).toEqual({ chat_id: 77001, text: "Habari" });
  });

  it("serves updates to a polling bot (getUpdates with offset and timeout)", async () => {
    const chat = ++nextUser;
    const worker = startTelegramWorker(ctx, fake);
    const polling = makeBot(ctx, fake, undefined, worker.kick);
    fake.pushUpdate(textUpdate(chat, "/start"));
    const running = polling.start({ timeout: 1 });
    await fake.waitFor((calls) =>
      calls.some((c) => c.method === "sendMessage" && c.payload.chat_id === chat),
    );
    await polling.stop();
    await running;
    await worker.stop();
    expect(lastMenu(chat).payload.text).toBe("Kibera Net");
  });
});
