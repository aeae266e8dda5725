import { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createBot } from "../../src/bots/telegram/bot.ts";
import { createTelegramRoutes } from "../../src/bots/telegram/routes.ts";
import { botText } from "../../src/bots/telegram/texts.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { chatLinks, customers } from "../../src/db/schema/index.ts";
import { billingContext } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { silent } from "../ussd/world.ts";
import { lastShownIn, postUpdate, SECRET, sendQueued, startFakeTelegram, textUpdate } from "./world.ts";

/** When the bot fails on an update, the person is told so in their own language. */

let database: Database;
let fake: Awaited<ReturnType<typeof startFakeTelegram>>;
const clock = new FakeClock("2026-04-01T06:00:00Z");

beforeAll(async () => {
  database = await createTestDatabase();
  fake = await startFakeTelegram();
});
afterAll(async () => {
  await fake?.close();
  await database?.close();
});

describe("a Telegram update the bot fails on", () => {
  it("is apologised for in the customer's language", async () => {
    const chat = 8_100_001;
    const [customer] = await database.db
      .insert(customers)
      .values({ accountNumber: "TDSW0001", phone: "+254712100001", name: "Wanjiku", language: "sw" })
      .returning();
    await database.db.insert(chatLinks).values({
      channel: "telegram",
      chatId: String(chat),
      customerId: customer!.id,
      method: "otp",
      linkedAt: clock.now(),
    });
    const bot = createBot({
      token: fake.token,
      db: database.db,
      chatMenu: { handle: () => Promise.reject(new Error("the database went away")) },
      logger: silent,
      apiRoot: fake.apiRoot,
      botInfo: fake.botInfo,
      clock,
    });
    const app = new Hono();
    app.route(
      "/hooks/tg",
      createTelegramRoutes({ bot, secretToken: SECRET, inbox: { db: database.db, clock } }),
    );

    expect(await postUpdate(app, "/hooks/tg", textUpdate(chat, "1"), SECRET, fake)).toBe(200);
    // What the bot says goes through the outbox: sent as the chat delivery worker would.
    await sendQueued(billingContext(database.db, clock).ctx, fake);
    expect(lastShownIn(fake, chat).payload.text).toBe(botText("sw", "failed"));
    expect(botText("sw", "failed")).not.toBe(botText("en", "failed"));
  });
});
