import { count, eq, sql } from "drizzle-orm";
import fc from "fast-check";
import type { Hono } from "hono";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import type { FakeTelegram } from "../../src/bots/telegram/fake-api.ts";
import { createTelegramRoutes } from "../../src/bots/telegram/routes.ts";
import { type FakeWhatsApp, startFakeWhatsApp } from "../../src/bots/whatsapp-cloud/fake-api.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { chatLinks, chatSessions, customers, paymentIntents } from "../../src/db/schema/index.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { silent } from "../ussd/world.ts";
import { signatureOf, startWhatsApp, type WhatsAppInstance } from "./whatsapp-cloud-world.ts";
import { makeBot, SECRET, startFakeTelegram } from "./world.ts";

/**
 * Random input posted to the chat webhooks, authenticated as the platform would: never a 5xx, and
 * nothing that needs a confirmation (a payment prompt, a customer, a chat link) comes of it. The
 * senders are kept unable to confirm anything (Telegram visitors who share only others' contacts,
 * WhatsApp numbers outside the served countries), so any such row is a bug, not luck.
 */

let database: Database;
let telegram: FakeTelegram;
let whatsappFake: FakeWhatsApp;
let wa: WhatsAppInstance;
let app: Hono;
let customerPhone: string;
let before: { intents: number; customers: number; links: number };
const clock = new FakeClock("2026-04-01T06:00:00Z");
const RUNS = Number(process.env.FUZZ_RUNS ?? 150);

async function counts() {
  const db = database.db;
  const [[intents], [people], [links]] = await Promise.all([
    db.select({ n: count() }).from(paymentIntents),
    db.select({ n: count() }).from(customers),
    db.select({ n: count() }).from(chatLinks),
  ]);
  return { intents: intents!.n, customers: people!.n, links: links!.n };
}

beforeAll(async () => {
  database = await createTestDatabase();
  const { ctx } = billingContext(database.db, clock);
  const plan = await createPlan(database.db, { priceCents: 150_000, name: "Fibre 1500" });
  customerPhone = uniquePhone();
  await createCustomerWithSubscription(ctx, admin, {
    name: "Achieng Otieno",
    phone: customerPhone,
    planId: plan.id,
  });
  telegram = await startFakeTelegram();
  // Mounted as main.ts mounts it, behind the app's own error handler.
  app = createApp({ db: database.db, logger: silent });
  app.route("/hooks/tg", createTelegramRoutes({ bot: makeBot(ctx, telegram), secretToken: SECRET }));
  whatsappFake = await startFakeWhatsApp();
  wa = startWhatsApp(ctx, whatsappFake);
  before = await counts();
});

afterAll(async () => {
  await wa?.channel.stop();
  await whatsappFake?.close();
  await telegram?.close();
  await database?.close();
});

const postTelegram = async (body: string) =>
  (
    await app.request("/hooks/tg", {
      method: "POST",
      headers: { "content-type": "application/json", "x-telegram-bot-api-secret-token": SECRET },
      body,
    })
  ).status;

/** A few users, so random inputs pile up in the same conversations. */
const userId = fc.integer({ min: 9_100_000, max: 9_100_007 });
const otherUser = fc.integer({ min: 1, max: 2 ** 40 });
const menuText = fc.constantFrom(
  "/start",
  "menu",
  "hi",
  "HABARI",
  "0",
  "00",
  "1",
  "2",
  "3",
  "4",
  "5",
  "98",
  "500",
);
const anyText = fc.oneof(
  menuText,
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 200 }),
  // Telegram's longest message.
  fc.string({ unit: "binary", minLength: 4000, maxLength: 4096 }),
  fc.integer().map(String),
);
const callbackData = fc.oneof(
  fc.string({ maxLength: 64 }),
  fc
    .tuple(fc.integer({ min: -5, max: 2_000_000_000 }), fc.integer({ min: -5, max: 1_200 }))
    .map(([step, key]) => `m:${step}:${key}`),
  fc
    .tuple(fc.nat(5), fc.constantFrom("0", "00", "1", "2", "3", "9"))
    .map(([step, key]) => `m:${step}:${key}`),
);
const chatType = fc.constantFrom("private", "private", "group", "supergroup", "channel");
const phone = fc.oneof(
  fc.constant("CUSTOMER"),
  fc.string({ maxLength: 20 }),
  fc.integer({ min: 0, max: 99_999_999 }).map((n) => `+2547${String(n).padStart(8, "0")}`),
);

const telegramUpdate = fc
  .record({
    updateId: fc.nat(),
    from: userId,
    other: otherUser,
    chatType,
    text: anyText,
    data: callbackData,
    phone,
    shape: fc.constantFrom("text", "contact", "press", "junk-message", "junk-update", "edited"),
    // `null` as the whole update is a known 500 (see the test pinning it below).
    junk: fc.jsonValue({ maxDepth: 3 }).filter((v) => v !== null),
    ownChat: fc.boolean(),
    withContactUser: fc.boolean(),
  })
  .map((r) => {
    const from = { id: r.from, is_bot: false, first_name: "Fuzz" };
    const chat = { id: r.from, type: r.chatType, first_name: "Fuzz" };
    const message = { message_id: r.updateId % 100_000, date: 1_775_000_000, chat, from };
    switch (r.shape) {
      case "text":
        return { update_id: r.updateId, message: { ...message, text: r.text } };
      case "edited":
        return { update_id: r.updateId, edited_message: { ...message, text: r.text } };
      case "contact": {
        // Someone else's contact (or one with no user): never the sender's own.
        const contact = {
          phone_number: r.phone === "CUSTOMER" ? customerPhone : r.phone,
          first_name: "Other",
          ...(r.withContactUser ? { user_id: r.other === r.from ? r.other + 1 : r.other } : {}),
        };
        return { update_id: r.updateId, message: { ...message, contact } };
      }
      case "press":
        return {
          update_id: r.updateId,
          callback_query: {
            id: `cb${r.updateId}`,
            from,
            chat_instance: "ci",
            data: r.data,
            message: {
              message_id: r.updateId % 1_000,
              date: 1_775_000_000,
              chat: { ...chat, id: r.ownChat ? r.from : r.other },
              text: r.text.slice(0, 100),
            },
          },
        };
      case "junk-message":
        return { update_id: r.updateId, message: r.junk };
      default:
        return r.junk;
    }
  });

/**
 * WhatsApp senders the bot cannot charge or link: numbers outside the served countries, or nonsense.
 * Mostly a few real-looking ones, so random input piles up in the same conversations and enough of
 * it gets past the door to the menu.
 */
const waId = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 7 }).map((n) => `1202555010${n}`) },
  fc.stringMatching(/^\d{1,16}$/).filter((s) => !s.startsWith("254") && !s.startsWith("0")),
  fc.string({ maxLength: 16 }),
);
const waMessage = fc
  .record({
    from: waId,
    id: fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.uuid().map((u) => `wamid.${u}`),
    ),
    type: fc.constantFrom(
      "text",
      "text",
      "text",
      "interactive",
      "interactive",
      "image",
      "location",
      "button",
      "",
    ),
    text: anyText,
    replyId: callbackData,
    replyKind: fc.constantFrom("button_reply", "list_reply", "nfm_reply"),
    junk: fc.jsonValue({ maxDepth: 2 }),
    shape: fc.constantFrom("message", "message", "message", "junk"),
  })
  .map((r) =>
    r.shape === "junk"
      ? r.junk
      : {
          from: r.from,
          id: r.id,
          timestamp: "1775000000",
          type: r.type,
          text: { body: r.text },
          interactive: { type: r.replyKind, [r.replyKind]: { id: r.replyId, title: "x" } },
        },
  );
const waBody = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .record({
        messages: fc.array(waMessage, { minLength: 1, maxLength: 4 }),
        phoneNumberId: fc.oneof({ weight: 3, arbitrary: fc.constant("OURS") }, fc.string({ maxLength: 20 })),
        field: fc.constantFrom("messages", "messages", "messages", "messages", "statuses", "account_update"),
        object: fc.constantFrom(
          "whatsapp_business_account",
          "whatsapp_business_account",
          "whatsapp_business_account",
          "page",
        ),
      })
      .map((r) =>
        JSON.stringify({
          object: r.object,
          entry: [
            {
              id: "WABA-1",
              changes: [
                {
                  field: r.field,
                  value: {
                    messaging_product: "whatsapp",
                    metadata: {
                      display_phone_number: "254700000000",
                      phone_number_id:
                        r.phoneNumberId === "OURS" ? whatsappFake.phoneNumberId : r.phoneNumberId,
                    },
                    messages: r.messages,
                  },
                },
              ],
            },
          ],
        }),
      ),
  },
  fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
  fc.string({ unit: "binary", maxLength: 500 }),
);

/** How many inputs the menu took on `channel`, over all its conversations: proof the random input reached it. */
async function menuStepsOn(channel: "telegram" | "whatsapp_cloud") {
  const [row] = await database.db
    .select({ n: sql<number>`coalesce(sum(${chatSessions.step}), 0)::int` })
    .from(chatSessions)
    .where(eq(chatSessions.channel, channel));
  return row!.n;
}

async function expectNothingConfirmed() {
  expect(await counts()).toEqual(before);
}

describe("fuzzing the chat webhooks", () => {
  it("Telegram: random updates with the right secret are never a 5xx and confirm nothing", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(telegramUpdate, { minLength: 1, maxLength: 4 }), async (updates) => {
        for (const update of updates) {
          const t0 = performance.now();
          const status = await postTelegram(JSON.stringify(update));
          if (process.env.FUZZ_DEBUG && performance.now() - t0 > 300)
            console.log(Math.round(performance.now() - t0), status, JSON.stringify(update).slice(0, 300));
          expect(status).toBeLessThan(500);
        }
        await expectNothingConfirmed();
      }),
      { numRuns: RUNS },
    );
    expect(await menuStepsOn("telegram")).toBeGreaterThan(0);
  });

  // Both need the webhook secret, so only Telegram (or whoever holds the secret) can send them.
  it("Telegram: a body that is not a JSON object is refused with a 4xx", async () => {
    // grammY's hono adapter would parse it and read `update.update_id` outside the bot's error
    // handling ("" and "x" throw in JSON.parse, "null" on `null.update_id`).
    for (const body of ["", "x", "null", "[]", "{}"]) {
      const status = await postTelegram(body);
      expect(status).toBeGreaterThanOrEqual(400);
      expect(status).toBeLessThan(500);
    }
  });

  it("Telegram: a refused answer to a button pressed outside a private chat is not a 5xx", async () => {
    // grammY's webhook callback rethrows what a handler throws (bot.catch serves only long polling):
    // when the Bot API refuses answerCallbackQuery (here: no query id; on Telegram: "query is too
    // old" after a slow or repeated delivery) the route logs it and answers 200, or Telegram would
    // deliver the update again and again.
    const update = {
      update_id: 1,
      callback_query: {
        from: { id: 9_100_000, is_bot: false, first_name: "Fuzz" },
        chat_instance: "ci",
        data: "m:1:1",
        message: { message_id: 1, date: 1_775_000_000, chat: { id: -100, type: "group" }, text: "x" },
      },
    };
    expect(await postTelegram(JSON.stringify(update))).toBeLessThan(500);
  });

  it("WhatsApp: random bodies signed with the app secret are never a 5xx and confirm nothing", async () => {
    await fc.assert(
      fc.asyncProperty(waBody, async (body) => {
        expect(await wa.post(body, signatureOf(body))).toBeLessThan(500);
        await expectNothingConfirmed();
      }),
      { numRuns: RUNS },
    );
    expect(await menuStepsOn("whatsapp_cloud")).toBeGreaterThan(0);
  });
});
