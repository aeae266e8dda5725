import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { retryUnhandled } from "../../src/bots/chat-inbox.ts";
import { type ChatMenu, createChatMenu } from "../../src/bots/chat-menu.ts";
import { createBot, handleStoredUpdate } from "../../src/bots/telegram/bot.ts";
import { createTelegramRoutes } from "../../src/bots/telegram/routes.ts";
import { startSandboxTelegram } from "../../src/bots/telegram/sandbox.ts";
import { DAY, FakeClock, HOUR } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { chatInbox, chatSessions } from "../../src/db/schema/index.ts";
import { menuJobs, purgeChatSessions } from "../../src/menu/jobs.ts";
import { createMenuServices } from "../../src/menu/services.ts";
import { billingContext } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { settings, silent } from "../ussd/world.ts";
import {
  button,
  lastMenuIn,
  pressUpdate,
  SECRET,
  sendQueued,
  startFakeTelegram,
  startInstance,
  textUpdate,
} from "./world.ts";

let database: Database;
let ctx: ReturnType<typeof billingContext>["ctx"];
const clock = new FakeClock("2026-04-01T06:00:00Z");

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
});
afterAll(async () => {
  await database?.close();
});

describe("Telegram's flood control", () => {
  it("a 429 holds the answer for retry_after, then it is sent once", async () => {
    const fake = await startFakeTelegram();
    try {
      const bot = startInstance(ctx, fake);
      const chat = 6_100_001;
      const menus = () =>
        fake
          .callsOf("sendMessage")
          .filter((c) => c.payload.chat_id === chat && c.payload.text === "Kibera Net");
      fake.failNext("sendMessage", 3);
      expect(await bot.deliver(textUpdate(chat, "hi"))).toBe(200);
      expect(fake.refused.map((c) => [c.method, c.payload.chat_id])).toEqual([["sendMessage", chat]]);
      expect(menus()).toHaveLength(0);

      clock.advance(2_000);
      await sendQueued(ctx, fake);
      expect(menus()).toHaveLength(0);
      clock.advance(1_000);
      await sendQueued(ctx, fake);
      expect(menus()).toHaveLength(1);
      await sendQueued(ctx, fake);
      expect(menus()).toHaveLength(1);
    } finally {
      await fake.close();
    }
  });
});

describe("chat session housekeeping", () => {
  it("drops chat sessions untouched for two days and keeps the rest", async () => {
    // The other tests' chats were active at the clock's now: they stay.
    const now = clock.now();
    const at = (ms: number) => new Date(now.getTime() - ms);
    const row = (chatId: string, lastActivityAt: Date) => ({
      channel: "telegram" as const,
      chatId,
      sessionKey: `k${chatId}`,
      lastActivityAt,
    });
    await database.db
      .insert(chatSessions)
      .values([row("p-old", at(2 * DAY + HOUR)), row("p-recent", at(2 * DAY - HOUR)), row("p-now", now)]);
    expect(await purgeChatSessions(database.db, now)).toEqual({ removed: 1 });
    const left = await database.db.select({ chatId: chatSessions.chatId }).from(chatSessions);
    expect(
      left
        .map((r) => r.chatId)
        .filter((id) => id.startsWith("p-"))
        .sort(),
    ).toEqual(["p-now", "p-recent"]);
    expect(menuJobs(clock).map((j) => j.name)).toContain("chat-sessions-purge");
  });

  it("a button from a conversation whose session was purged is out of date in the next one, whatever its step", async () => {
    const fake = await startFakeTelegram();
    try {
      const bot = startInstance(ctx, fake);
      const chat = 6_100_077;
      const press = async (label: string) => {
        const menu = lastMenuIn(fake, chat);
        return bot.deliver(pressUpdate(fake, chat, menu.messageId!, button(menu, label)));
      };
      await bot.deliver(textUpdate(chat, "/start"));
      await press("3. Language");
      const languages = lastMenuIn(fake, chat);
      const old = pressUpdate(fake, chat, languages.messageId!, button(languages, "2. Kiswahili"));

      clock.advance(3 * DAY);
      await purgeChatSessions(database.db, clock.now());
      // The same two steps again, in a conversation that starts over.
      await bot.deliver(textUpdate(chat, "/start"));
      await press("3. Language");
      const [before] = await database.db
        .select()
        .from(chatSessions)
        .where(eq(chatSessions.chatId, String(chat)));
      const calls = fake.calls.length;

      expect(await bot.deliver(old)).toBe(200);
      expect(fake.calls.slice(calls)).toEqual([
        {
          method: "answerCallbackQuery",
          payload: expect.objectContaining({ text: "This menu is out of date: use the newest one below." }),
        },
      ]);
      const [after] = await database.db
        .select()
        .from(chatSessions)
        .where(eq(chatSessions.chatId, String(chat)));
      expect(after).toEqual(before);
    } finally {
      await fake.close();
    }
  });
});

describe("the Telegram sandbox", () => {
  it("runs the bot by long polling against the fake; a curl-style POST talks to it", async () => {
    const sandbox = await startSandboxTelegram({ ctx, settings, logger: silent });
    try {
      const post = (body: unknown) =>
        fetch(`${sandbox.fake.apiRoot}/sandbox/updates`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
        });
      expect((await post({ user: 42 })).status).toBe(400);
      const queued = await post({ user: 42, text: "/start" });
      expect(queued.status).toBe(200);
      await sandbox.fake.waitFor((calls) =>
        calls.some(
          (c) => c.method === "sendMessage" && c.payload.chat_id === 42 && c.payload.text === "Kibera Net",
        ),
      );
      const shown = (await (await fetch(`${sandbox.fake.apiRoot}/sandbox/chats/42`)).json()) as {
        result: { text: string }[];
      };
      expect(shown.result.map((m) => m.text)).toContain("Kibera Net");
    } finally {
      await sandbox.stop();
    }
  });
});

describe("Telegram updates are stored before they are handled", () => {
  it("handles a redelivered update once", async () => {
    const fake = await startFakeTelegram();
    try {
      const bot = startInstance(ctx, fake);
      const chat = 6_200_001;
      await bot.deliver(textUpdate(chat, "hi"));
      const update = textUpdate(chat, "1");
      expect(await bot.deliver(update)).toBe(200);
      const shown = fake.calls.length;
      expect(await bot.deliver(update)).toBe(200);
      expect(fake.calls.length).toBe(shown);
      const [row] = await database.db
        .select()
        .from(chatInbox)
        .where(and(eq(chatInbox.channel, "telegram"), eq(chatInbox.externalId, String(update.update_id))));
      expect(row).toMatchObject({ status: "done", attempts: 1, leaseUntil: null });
    } finally {
      await fake.close();
    }
  });

  it("keeps an update the bot failed on, and the retry loop answers it", async () => {
    const fake = await startFakeTelegram();
    try {
      const real = createChatMenu({
        db: ctx.db,
        services: createMenuServices(ctx),
        settings,
        logger: silent,
        clock,
      });
      let failures = 1;
      const chatMenu: ChatMenu = {
        handle: (request) =>
          failures-- > 0 ? Promise.reject(new Error("database went away")) : real.handle(request),
      };
      const bot = createBot({
        token: fake.token,
        db: ctx.db,
        chatMenu,
        logger: silent,
        apiRoot: fake.apiRoot,
        botInfo: fake.botInfo,
        clock,
      });
      const routes = createTelegramRoutes({ bot, secretToken: SECRET, inbox: { db: ctx.db, clock } });
      const chat = 6_200_002;
      const update = textUpdate(chat, "hi");
      const answer = await routes.request("/", {
        method: "POST",
        headers: { "content-type": "application/json", "x-telegram-bot-api-secret-token": SECRET },
        body: JSON.stringify(update),
      });
      expect(answer.status).toBe(200);
      const [kept] = await database.db
        .select()
        .from(chatInbox)
        .where(and(eq(chatInbox.channel, "telegram"), eq(chatInbox.externalId, String(update.update_id))));
      expect(kept).toMatchObject({ status: "failed", attempts: 1 });

      clock.advance(1_000);
      expect(
        await retryUnhandled({ db: ctx.db, clock }, "telegram", (row) =>
          handleStoredUpdate(bot, row.payload),
        ),
      ).toBe(1);
      await sendQueued(ctx, fake);
      expect(
        fake
          .callsOf("sendMessage")
          .some((c) => c.payload.chat_id === chat && c.payload.text === "Kibera Net"),
      ).toBe(true);
      expect(
        await retryUnhandled({ db: ctx.db, clock }, "telegram", (row) =>
          handleStoredUpdate(bot, row.payload),
        ),
      ).toBe(0);
    } finally {
      await fake.close();
    }
  });
});

describe("two bots' updates in one inbox", () => {
  it("keeps each bot's update ids apart: the same number from the admin bot is not a duplicate", async () => {
    const fake = await startFakeTelegram();
    try {
      const bot = createBot({
        token: fake.token,
        db: ctx.db,
        chatMenu: createChatMenu({
          db: ctx.db,
          services: createMenuServices(ctx),
          settings,
          logger: silent,
          clock,
        }),
        logger: silent,
        apiRoot: fake.apiRoot,
        botInfo: fake.botInfo,
        clock,
      });
      const post = (channel: "telegram" | "telegram_admin", body: unknown) =>
        createTelegramRoutes({ bot, secretToken: SECRET, inbox: { db: ctx.db, clock, channel } }).request(
          "/",
          {
            method: "POST",
            headers: { "content-type": "application/json", "x-telegram-bot-api-secret-token": SECRET },
            body: JSON.stringify(body),
          },
        );
      const update = { ...textUpdate(6_300_001, "hi"), update_id: 77_000_001 };
      expect((await post("telegram", update)).status).toBe(200);
      expect((await post("telegram_admin", update)).status).toBe(200);
      const stored = await database.db
        .select({ channel: chatInbox.channel })
        .from(chatInbox)
        .where(eq(chatInbox.externalId, "77000001"));
      expect(stored.map((r) => r.channel).sort()).toEqual(["telegram", "telegram_admin"]);
    } finally {
      await fake.close();
    }
  });
});
