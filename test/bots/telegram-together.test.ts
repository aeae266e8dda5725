import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { firstChatStep } from "../../src/bots/chat-save.ts";
import type { FakeTelegram } from "../../src/bots/telegram/fake-api.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { chatInbox, chatSessions } from "../../src/db/schema/index.ts";
import { billingContext, count } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import {
  button,
  buttonsOf,
  type Instance,
  lastMenuIn,
  pressUpdate,
  shownIn,
  startFakeTelegram,
  startInstance,
  textUpdate,
} from "./world.ts";

/**
 * Messages of many chats arriving at the same moment are stored, read and saved together (one
 * statement for each step): each must still count once, for its own chat only.
 */

let database: Database;
let fake: FakeTelegram;
let bot: Instance;
const clock = new FakeClock("2026-04-02T06:00:00Z");
let nextUser = 7_500_000;

beforeAll(async () => {
  database = await createTestDatabase();
  fake = await startFakeTelegram();
  bot = startInstance(billingContext(database.db, clock).ctx, fake);
});
afterAll(async () => {
  await fake?.close();
  await database?.close();
});

/** The step of a chat's first answer; each counted input moves it one on. */
const first = firstChatStep(clock.now());

const stepOf = async (chat: number) => {
  const [row] = await database.db
    .select({ step: chatSessions.step })
    .from(chatSessions)
    .where(and(eq(chatSessions.channel, "telegram"), eq(chatSessions.chatId, String(chat))));
  return row?.step;
};

describe("Telegram updates arriving together", () => {
  it("answers each of thirty chats once, with its own menu, and marks each update handled", async () => {
    const chats = Array.from({ length: 30 }, () => ++nextUser);
    const statuses = await Promise.all(chats.map((chat) => bot.deliver(textUpdate(chat, "/start"))));
    expect(statuses.every((status) => status === 200)).toBe(true);
    for (const chat of chats) {
      // The main menu, and the offer to share their contact (a visitor).
      expect(shownIn(fake, chat)).toHaveLength(2);
      expect(buttonsOf(lastMenuIn(fake, chat))[0]?.text).toBe("1. Buy hotspot voucher");
      expect(await stepOf(chat)).toBe(first);
    }
    const ids = chats.map(String);
    expect(
      await count(
        database.db,
        sql`select count(*)::int as n from chat_inbox where chat_id in ${ids} and status = 'done'`,
      ),
    ).toBe(30);

    // The next press of every chat, together again: each moves its own chat one step.
    await Promise.all(
      chats.map((chat) => {
        const menu = lastMenuIn(fake, chat);
        return bot.deliver(pressUpdate(fake, chat, menu.messageId!, button(menu, "4. Help")));
      }),
    );
    for (const chat of chats) {
      expect(await stepOf(chat)).toBe(first + 1);
      expect(lastMenuIn(fake, chat).payload.text).toMatch(/^Help: call or WhatsApp/);
    }
  });

  it("counts one of two presses of one chat arriving at once; the other is answered as out of date", async () => {
    const chat = ++nextUser;
    await bot.deliver(textUpdate(chat, "/start"));
    const home = lastMenuIn(fake, chat);
    const calls = fake.calls.length;
    const statuses = await Promise.all([
      bot.deliver(pressUpdate(fake, chat, home.messageId!, button(home, "4. Help"))),
      bot.deliver(pressUpdate(fake, chat, home.messageId!, button(home, "3. Language"))),
    ]);
    expect(statuses).toEqual([200, 200]);
    expect(await stepOf(chat)).toBe(first + 1);
    const after = fake.calls.slice(calls);
    expect(after.filter((c) => c.method === "editMessageText" || c.method === "sendMessage")).toHaveLength(1);
    expect(after).toContainEqual({
      method: "answerCallbackQuery",
      payload: expect.objectContaining({ text: "This menu is out of date: use the newest one below." }),
    });
    const rows = await database.db
      .select({ status: chatInbox.status })
      .from(chatInbox)
      .where(and(eq(chatInbox.channel, "telegram"), eq(chatInbox.chatId, String(chat))));
    expect(rows.map((r) => r.status)).toEqual(["done", "done", "done"]);
  });

  it("stores and answers a message holding half a surrogate pair, which the database's JSON refuses", async () => {
    const chat = ++nextUser;
    expect(await bot.deliver(textUpdate(chat, "hi\ud800"))).toBe(200);
    const [row] = await database.db
      .select({ payload: chatInbox.payload, status: chatInbox.status })
      .from(chatInbox)
      .where(and(eq(chatInbox.channel, "telegram"), eq(chatInbox.chatId, String(chat))));
    expect(row?.status).toBe("done");
    expect(JSON.stringify(row?.payload)).toContain("hi\ufffd");
    expect(shownIn(fake, chat).length).toBeGreaterThan(0);
  });
});
