import { and, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { enqueueMessage } from "../../src/billing/outbox.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { phoneChat } from "../../src/bots/phone-link.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { chatLinks, messageOutbox } from "../../src/db/schema/index.ts";
import { admin, billingContext, createPlan, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import {
  button,
  contactUpdate,
  type Instance,
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
let nextUser = 8_600_000;

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

async function customer(phone = uniquePhone()) {
  const plan = await createPlan(database.db, { priceCents: 150_000, name: "Fibre 1500" });
  const created = await createCustomerWithSubscription(ctx, admin, {
    name: "Achieng Otieno",
    phone,
    planId: plan.id,
  });
  return created.customer;
}

const say = async (chat: number, text: string) => expect(await bot.deliver(textUpdate(chat, text))).toBe(200);
const linksOf = (chat: number) =>
  database.db
    .select()
    .from(chatLinks)
    .where(and(eq(chatLinks.channel, "telegram"), eq(chatLinks.chatId, String(chat))));

describe("a customer who unlinks Telegram and then writes on WhatsApp", () => {
  it("gets their notices in the WhatsApp chat that linked itself, not by SMS", async () => {
    const chat = ++nextUser;
    const person = await customer();
    expect(await bot.deliver(contactUpdate(chat, { user_id: chat, phone_number: person.phone }))).toBe(200);
    await say(chat, "/unlink");
    const ask = lastShownIn(fake, chat);
    expect(await bot.deliver(pressUpdate(fake, chat, ask.messageId!, button(ask, "Unlink")))).toBe(200);
    expect(await linksOf(chat)).toEqual([]);

    // Their first WhatsApp message links that chat (what the WhatsApp adapters call for each message).
    const linked = await phoneChat(database.db, "whatsapp_cloud", person.phone.slice(1));
    expect(linked.newlyLinked).toBe(person.accountNumber);

    await enqueueMessage(database.db, clock.now(), {
      recipient: person.phone,
      language: "en",
      template: "payment_received",
      params: { amountCents: 150_000, balanceCents: 0, account: person.accountNumber, receipt: "SAB12CD35" },
    });
    const rows = await database.db
      .select()
      .from(messageOutbox)
      .where(eq(messageOutbox.template, "payment_received"));
    const notice = rows.find((r) => r.params.receipt === "SAB12CD35");
    // "Linking a chat (... WhatsApp's first message) chooses it; unlinking brings notices back to SMS."
    expect(notice).toMatchObject({ channel: "whatsapp_cloud", recipient: person.phone.slice(1) });
  });
});
