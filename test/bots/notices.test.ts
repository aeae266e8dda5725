import { and, asc, eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { settleStkResult } from "../../src/billing/intents/settle.ts";
import { parseTemplateMap } from "../../src/bots/chat-notices.ts";
import { phoneChat } from "../../src/bots/phone-link.ts";
import type { FakeTelegram } from "../../src/bots/telegram/fake-api.ts";
import { type FakeWhatsApp, startFakeWhatsApp } from "../../src/bots/whatsapp-cloud/fake-api.ts";
import { FakeClock, HOUR } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { messageOutbox, paymentIntents, vouchers } from "../../src/db/schema/index.ts";
import { admin, billingContext, createPlan, receiptNotices, uniquePhone } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import {
  bodyOf,
  failedStatusReport,
  inbound,
  startWhatsApp,
  text,
  type WhatsAppInstance,
} from "./whatsapp-cloud-world.ts";
import {
  button,
  contactUpdate,
  type Instance,
  lastMenuIn,
  lastShownIn,
  pressUpdate,
  sendQueued,
  startFakeTelegram,
  startInstance,
  textUpdate,
} from "./world.ts";

/**
 * Notices (receipts, reminders, credentials…) go to the chat a customer linked, rendered from the same
 * catalogs; a chat that cannot take one hands it to SMS, and each is delivered once.
 */

let database: Database;
let ctx: ReturnType<typeof billingContext>["ctx"];
const clock = new FakeClock("2026-05-01T06:00:00Z");
let telegram: FakeTelegram;
let bot: Instance;
let cloud: FakeWhatsApp;
let wa: WhatsAppInstance;
let planId: number;
let nextUser = 8_200_000;

beforeAll(async () => {
  database = await createTestDatabase();
  ctx = billingContext(database.db, clock).ctx;
  telegram = await startFakeTelegram();
  bot = startInstance(ctx, telegram);
  cloud = await startFakeWhatsApp({ now: () => clock.now() });
  cloud.approveTemplate("tandao_receipt", "en", 2);
  cloud.approveTemplate("tandao_suspended", "en", 2);
  wa = startWhatsApp(ctx, cloud, {
    templates: parseTemplateMap(
      "payment_received=tandao_receipt:amountCents|receipt, suspended=tandao_suspended:amountCents|payTo",
    ),
    signing: { isp: "Kibera Net", till: "555111", ussdCode: "*384*123#" },
  });
  planId = (await createPlan(database.db, { priceCents: 150_000, name: "Fibre 1500" })).id;
});
afterAll(async () => {
  await wa?.channel.stop();
  await cloud?.close();
  await telegram?.close();
  await database?.close();
});

/** Paybill payments' receipts are the notices under test. */
const { customer, pay } = receiptNotices(
  () => ctx,
  () => planId,
);

async function receiptsTo(phone: string) {
  return database.db
    .select()
    .from(messageOutbox)
    .where(and(eq(messageOutbox.template, "payment_received"), eq(messageOutbox.fallbackRecipient, phone)))
    .orderBy(asc(messageOutbox.id));
}

async function smsTo(phone: string, template: string) {
  return database.db
    .select()
    .from(messageOutbox)
    .where(
      and(
        eq(messageOutbox.channel, "sms"),
        eq(messageOutbox.recipient, phone),
        eq(messageOutbox.template, template),
      ),
    );
}

describe("notices to a customer who linked Telegram", () => {
  it("come to the chat, rendered from the catalog, and not by SMS", async () => {
    const chat = ++nextUser;
    const person = await customer();
    await bot.deliver(textUpdate(chat, "/start"));
    await bot.deliver(contactUpdate(chat, { user_id: chat, phone_number: person.phone }));

    const receipt = await pay(person.id);
    await sendQueued(ctx, telegram);
    const shown = telegram.callsOf("sendMessage").filter((c) => c.payload.chat_id === chat);
    expect(shown.at(-1)?.payload.text).toContain(receipt);
    expect(shown.at(-1)?.payload.text).toContain("KES 500");
    expect(await receiptsTo(person.phone)).toMatchObject([{ channel: "telegram", status: "done" }]);
    expect(await smsTo(person.phone, "payment_received")).toEqual([]);
  });

  it("go by SMS once the person blocked the bot, delivered once", async () => {
    const chat = ++nextUser;
    const person = await customer();
    await bot.deliver(textUpdate(chat, "/start"));
    await bot.deliver(contactUpdate(chat, { user_id: chat, phone_number: person.phone }));
    telegram.block(chat);

    await pay(person.id);
    await sendQueued(ctx, telegram);
    const [row] = await smsTo(person.phone, "payment_received");
    expect(row).toMatchObject({ status: "pending", fallbackRecipient: person.phone });
    expect(row?.lastError).toContain("blocked");
    expect(await receiptsTo(person.phone)).toHaveLength(1);
  });

  it("go by SMS after the chat was unlinked, even when it confirmed a payment a moment before", async () => {
    const chat = ++nextUser;
    const person = await customer();
    await bot.deliver(textUpdate(chat, "/start"));
    await bot.deliver(contactUpdate(chat, { user_id: chat, phone_number: person.phone }));
    const press = async (prefix: string) => {
      const menu = lastMenuIn(telegram, chat);
      expect(await bot.deliver(pressUpdate(telegram, chat, menu.messageId!, button(menu, prefix)))).toBe(200);
    };
    // Pays what is due from the chat: the receipt of that payment is to come back here.
    await press("2.");
    await press("1.");
    await press("1.");
    expect(lastShownIn(telegram, chat).payload.text).toMatch(/^Enter your M-Pesa PIN/);
    // Then unlinks the chat (a relative's phone, say): "no longer linked".
    await bot.deliver(textUpdate(chat, "/unlink"));
    const ask = lastShownIn(telegram, chat);
    expect(await bot.deliver(pressUpdate(telegram, chat, ask.messageId!, button(ask, "Unlink")))).toBe(200);

    await pay(person.id);
    expect(await smsTo(person.phone, "payment_received")).toHaveLength(1);
    expect(await receiptsTo(person.phone)).toEqual([]);
  });
});

describe("notices to a customer whose chat was linked to another account", () => {
  it("go by SMS, even when it confirmed a payment there a moment before", async () => {
    const chat = ++nextUser;
    const first = await customer();
    const second = await customer();
    await bot.deliver(textUpdate(chat, "/start"));
    await bot.deliver(contactUpdate(chat, { user_id: chat, phone_number: first.phone }));
    const press = async (prefix: string) => {
      const menu = lastMenuIn(telegram, chat);
      expect(await bot.deliver(pressUpdate(telegram, chat, menu.messageId!, button(menu, prefix)))).toBe(200);
    };
    // Pays what the first account owes from the chat: its receipt was to come back here.
    await press("2.");
    await press("1.");
    await press("1.");
    expect(lastShownIn(telegram, chat).payload.text).toMatch(/^Enter your M-Pesa PIN/);
    // The same Telegram user then shares another number, a customer's too: the chat is theirs now.
    await bot.deliver(contactUpdate(chat, { user_id: chat, phone_number: second.phone }));

    await pay(first.id);
    expect(await smsTo(first.phone, "payment_received")).toHaveLength(1);
    expect(await receiptsTo(first.phone)).toEqual([]);
    // Its notices free again, the first account's WhatsApp chat is chosen when it links itself.
    const digits = first.phone.slice(1);
    expect((await phoneChat(database.db, "whatsapp", digits)).newlyLinked).toBe(first.accountNumber);
    await pay(first.id);
    expect(await receiptsTo(first.phone)).toMatchObject([{ channel: "whatsapp", recipient: digits }]);
    await pay(second.id);
    expect(await receiptsTo(second.phone)).toMatchObject([{ channel: "telegram", recipient: String(chat) }]);
  });
});

describe("notices to a customer who unlinked Telegram", () => {
  it("come to the WhatsApp chat that linked itself by their number, not by SMS", async () => {
    const chat = ++nextUser;
    const person = await customer();
    await bot.deliver(contactUpdate(chat, { user_id: chat, phone_number: person.phone }));
    await bot.deliver(textUpdate(chat, "/unlink"));
    const ask = lastShownIn(telegram, chat);
    expect(await bot.deliver(pressUpdate(telegram, chat, ask.messageId!, button(ask, "Unlink")))).toBe(200);

    // Their first WhatsApp message links that chat (what the WhatsApp channels do for each message).
    const digits = person.phone.slice(1);
    expect((await phoneChat(database.db, "whatsapp", digits)).newlyLinked).toBe(person.accountNumber);
    await pay(person.id);
    expect(await receiptsTo(person.phone)).toMatchObject([{ channel: "whatsapp", recipient: digits }]);
    expect(await smsTo(person.phone, "payment_received")).toEqual([]);
  });
});

describe("notices to a customer on the WhatsApp Cloud API", () => {
  it("are free text within 24 hours of their last message, an approved template after", async () => {
    const person = await customer();
    const waId = person.phone.slice(1);
    await wa.post(inbound(cloud, waId, text("hi")));

    const inWindow = await pay(person.id);
    await wa.channel.sendDue();
    expect(cloud.sentTo(waId).at(-1)?.payload).toMatchObject({ type: "text" });
    expect(JSON.stringify(cloud.sentTo(waId).at(-1)?.payload)).toContain(inWindow);

    clock.advance(25 * HOUR);
    const outside = await pay(person.id, 20_000);
    await wa.channel.sendDue();
    expect(cloud.sentTo(waId).at(-1)?.payload).toEqual({
      messaging_product: "whatsapp",
      recipient_type: "individual",
      to: waId,
      type: "template",
      template: {
        name: "tandao_receipt",
        language: { code: "en" },
        components: [
          {
            type: "body",
            parameters: [
              { type: "text", text: "KES 200" },
              { type: "text", text: outside },
            ],
          },
        ],
      },
    });
    expect(await smsTo(person.phone, "payment_received")).toEqual([]);
  });

  it("say where to pay as the ISP's settings say: with a till, dial the menu", async () => {
    const person = await customer();
    const waId = person.phone.slice(1);
    await wa.post(inbound(cloud, waId, text("hi")));
    await database.db.insert(messageOutbox).values({
      channel: "sms",
      recipient: person.phone,
      language: "en",
      template: "invoice_reminder",
      params: {
        amountCents: 150_000,
        dueAt: clock.now().toISOString(),
        days: 3,
        account: person.accountNumber,
      },
      nextAttemptAt: clock.now(),
      createdAt: clock.now(),
    });
    await wa.channel.sendDue();
    expect(JSON.stringify(cloud.sentTo(waId).at(-1)?.payload)).toContain("Pay by M-Pesa, dial *384*123#.");
  });

  it("fill a template's payTo parameter as the SMS says it, never with an empty text", async () => {
    const person = await customer();
    const waId = person.phone.slice(1);
    await wa.post(inbound(cloud, waId, text("hi")));
    clock.advance(25 * HOUR);
    await database.db.insert(messageOutbox).values({
      channel: "sms",
      recipient: person.phone,
      language: "en",
      template: "suspended",
      params: { amountCents: 150_000, account: person.accountNumber },
      nextAttemptAt: clock.now(),
      createdAt: clock.now(),
    });
    await wa.channel.sendDue();
    const sent = cloud.sentTo(waId).at(-1)?.payload as {
      type: string;
      template?: { components: { parameters: { text: string }[] }[] };
    };
    expect(sent.type).toBe("template");
    // The SMS reads "Pay KES 1,500 by M-Pesa, dial *384*123#, to restore it."
    expect(sent.template?.components[0]?.parameters.map((p) => p.text)).toEqual([
      "KES 1,500",
      "dial *384*123#",
    ]);
  });

  it("go as the template, not by SMS, when Meta says the window closed before we thought", async () => {
    const person = await customer();
    const waId = person.phone.slice(1);
    // Meta's window runs from T0, but the message came stamped five hours later (clocks differ).
    const stamped = String(Math.floor((clock.now().getTime() + 5 * HOUR) / 1000));
    const late = inbound(cloud, waId, { ...text("hi"), timestamp: stamped });
    clock.advance(5 * HOUR);
    expect(await wa.post(late)).toBe(200);
    // 25 hours after T0: Meta's window is closed, ours (from the stamp) is not.
    clock.advance(20 * HOUR);
    await pay(person.id, 20_000);
    await wa.channel.sendDue();
    expect(cloud.refused.filter((r) => r.to === waId)).toMatchObject([{ code: 131047 }]);
    expect(cloud.sentTo(waId).at(-1)?.payload).toMatchObject({
      type: "template",
      template: { name: "tandao_receipt" },
    });
    expect(await receiptsTo(person.phone)).toMatchObject([{ channel: "whatsapp_cloud", status: "done" }]);
    expect(await smsTo(person.phone, "payment_received")).toEqual([]);
  });

  it("refuse at start-up a template entry naming a notice or a parameter the catalogs lack", () => {
    expect(() => parseTemplateMap("suspended=tandao_suspended:amountCents|payto")).toThrow(
      /WHATSAPP_CLOUD_TEMPLATES.*payto/,
    );
    expect(() => parseTemplateMap("suspend=tandao_suspended:amountCents")).toThrow(
      /WHATSAPP_CLOUD_TEMPLATES.*suspend\b/,
    );
    expect(parseTemplateMap("suspended=tandao_suspended:amountCents|payTo").get("suspended")).toEqual({
      name: "tandao_suspended",
      params: ["amountCents", "payTo"],
    });
  });

  it("without an approved template, go by SMS outside the window", async () => {
    const person = await customer();
    const waId = person.phone.slice(1);
    await wa.post(inbound(cloud, waId, text("hi")));
    clock.advance(25 * HOUR);
    const sentBefore = cloud.sentTo(waId).length;
    // No template is configured for a restore or a welcome; a reminder stands in for them here.
    await database.db.insert(messageOutbox).values({
      channel: "sms",
      recipient: person.phone,
      language: "en",
      template: "invoice_reminder",
      params: { amountCents: 150_000, dueAt: clock.now().toISOString(), account: person.accountNumber },
      nextAttemptAt: clock.now(),
      createdAt: clock.now(),
    });
    await wa.channel.sendDue();
    expect(cloud.sentTo(waId)).toHaveLength(sentBefore);
    const [sms] = await smsTo(person.phone, "invoice_reminder");
    expect(sms).toMatchObject({ status: "pending", fallbackRecipient: person.phone });
    expect(sms?.lastError).toContain("window");
  });
});

describe("a WhatsApp message Meta accepted, then reported failed", () => {
  it("goes by SMS once WhatsApp says it could not be delivered (131026), not lost", async () => {
    const person = await customer();
    const waId = person.phone.slice(1);
    await wa.post(inbound(cloud, waId, text("hi")));
    const receipt = await pay(person.id, 30_000);
    await wa.channel.sendDue();
    const accepted = cloud.sentTo(waId).at(-1)!;
    expect(JSON.stringify(accepted.payload)).toContain(receipt);

    expect(await wa.post(JSON.stringify(failedStatusReport(cloud, accepted.id, waId, 131026)))).toBe(200);
    // Meta delivers webhooks at least once: the same report again changes nothing.
    expect(await wa.post(JSON.stringify(failedStatusReport(cloud, accepted.id, waId, 131026)))).toBe(200);
    const sms = await smsTo(person.phone, "payment_received");
    expect(sms).toMatchObject([{ status: "pending", fallbackRecipient: person.phone }]);
    expect(sms[0]?.lastError).toContain("131026");
  });

  it("leaves a failed menu answer recorded as failed (it has no phone to fall back to)", async () => {
    const person = await customer();
    const waId = person.phone.slice(1);
    await wa.post(inbound(cloud, waId, text("hi")));
    const menu = cloud.sentTo(waId).at(-1)!;
    expect(await wa.post(JSON.stringify(failedStatusReport(cloud, menu.id, waId, 131026)))).toBe(200);
    const [row] = await database.db
      .select()
      .from(messageOutbox)
      .where(eq(messageOutbox.providerMessageId, menu.id));
    expect(row).toMatchObject({ channel: "whatsapp_cloud", status: "dead" });
    expect(row?.lastError).toContain("131026");
  });
});

describe("what a chat's payment leads to", () => {
  it("a voucher bought by a visitor in a WhatsApp chat ends with its code in that chat", async () => {
    await createPlan(database.db, {
      name: "2 Hours",
      kind: "hotspot",
      priceCents: 3_000,
      periodUnit: "hours",
      periodCount: 2,
      timeLimitSeconds: 7200,
    });
    const phone = uniquePhone();
    const waId = phone.slice(1);
    const say = (body: string) => wa.post(inbound(cloud, waId, text(body)));
    await say("hi");
    await say("1");
    expect(JSON.stringify(cloud.sentTo(waId).at(-1)?.payload)).toContain("1. 2 Hours");
    await say("1");
    await say("1");
    const [intent] = await database.db.select().from(paymentIntents).where(eq(paymentIntents.phone, phone));
    expect(intent).toMatchObject({ purpose: "voucher", channel: "whatsapp_cloud" });
    await database.db
      .update(paymentIntents)
      .set({ checkoutRequestId: `ws_CO_notice_${intent!.id}` })
      .where(eq(paymentIntents.id, intent!.id));
    const settled = await settleStkResult(ctx, admin, {
      checkoutRequestId: `ws_CO_notice_${intent!.id}`,
      outcome: "paid",
      reason: "The service request is processed successfully.",
      receipt: `VCH${String(intent!.id).padStart(7, "0")}`,
      amountCents: 3_000,
      phone,
      source: "callback",
    });
    expect(settled.status).toBe("credited");
    await wa.channel.sendDue();
    const [voucher] = await database.db.select().from(vouchers).where(eq(vouchers.soldToPhone, phone));
    expect(voucher).toBeDefined();
    expect(bodyOf(cloud.sentTo(waId).at(-1))).toContain(voucher!.code);
    expect(await smsTo(phone, "voucher_code")).toEqual([]);
  });
});
