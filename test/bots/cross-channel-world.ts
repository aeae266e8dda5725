import { and, asc, eq, inArray, ne, or } from "drizzle-orm";
import { Hono } from "hono";
import type { BillingContext } from "../../src/billing/context.ts";
import { deliverDueChats } from "../../src/bots/chat-delivery.ts";
import { createChatMenu } from "../../src/bots/chat-menu.ts";
import { CHAT_CONTENT_TEMPLATE } from "../../src/bots/chat-outbox.ts";
import { createBot } from "../../src/bots/telegram/bot.ts";
import { type FakeTelegram, startFakeTelegram } from "../../src/bots/telegram/fake-api.ts";
import { createTelegramRoutes } from "../../src/bots/telegram/routes.ts";
import { type FakeWhatsApp, startFakeWhatsApp } from "../../src/bots/whatsapp-cloud/fake-api.ts";
import { fakeMessage } from "../../src/bots/whatsapp-web/fake-client.ts";
import type { FakeClock } from "../../src/clock.ts";
import type { Db } from "../../src/db/client.ts";
import {
  auditLog,
  customers,
  invoices,
  messageOutbox,
  paymentIntents,
  payments,
  plans,
  provisioningOutbox,
  routers,
  subscriptions,
  vouchers,
} from "../../src/db/schema/index.ts";
import { createMenuServices } from "../../src/menu/services.ts";
import type { MenuSettings } from "../../src/menu/types.ts";
import { ledgerSum } from "../support/billing.ts";
import { settings, silent, startUssdWorld, type UssdWorld } from "../ussd/world.ts";
import { bodyOf, inbound, optionsOf, startWhatsApp, text } from "./whatsapp-cloud-world.ts";
import { flush, startWorld } from "./whatsapp-web-world.ts";
import { buttonsOf, contactUpdate, SECRET, sendQueued, shownIn, textUpdate } from "./world.ts";

/**
 * One person, one channel: the same typed inputs on USSD, Telegram, WhatsApp Web and the WhatsApp
 * Cloud API. Every channel runs on a billing context and clock of its own (all starting at the same
 * instant) with the Daraja fake, the M-Pesa callback route and the SMS worker of a USSD world behind
 * it, so the money side is the same code on every channel and only the conversation differs.
 */

export type ChannelName = "ussd" | "telegram" | "whatsapp-web" | "whatsapp-cloud";
export const CHANNELS: readonly ChannelName[] = ["ussd", "telegram", "whatsapp-web", "whatsapp-cloud"];

export interface Driver {
  phone: string;
  /** Starts a conversation at the main menu (USSD: a new dial; a chat: its home word). */
  begin(): Promise<string>;
  /** One typed input; returns everything the person was shown in answer, as plain text. */
  say(input: string): Promise<string>;
  /**
   * Settles what M-Pesa was asked (the payer approves, the callback is posted), then delivers
   * the notices: by SMS, and on a chat channel what was routed to the chat. Returns what the
   * person received (SMS and chat messages) as plain text.
   */
  settle(): Promise<string[]>;
  close(): Promise<void>;
}

export interface ChannelSetup {
  ctx: BillingContext;
  clock: FakeClock;
  db: Db;
  settings: MenuSettings;
  phone: string;
}

/** The payment side of every channel: Daraja fake, callbacks, SMS delivery (see test/ussd/world.ts). */
async function paymentsFor(setup: ChannelSetup): Promise<{ pay: UssdWorld; sms: () => string[] }> {
  const pay = await startUssdWorld(setup.ctx, setup.db, { settings: setup.settings });
  let seen = 0;
  // The SMS the phone received since the last call.
  const sms = () => {
    const mine = pay.at.inbox.filter((m) => m.to === setup.phone).map((m) => m.message);
    const fresh = mine.slice(seen);
    seen = mine.length;
    return fresh;
  };
  return { pay, sms };
}

async function ussdDriver(setup: ChannelSetup): Promise<Driver> {
  const { pay, sms } = await paymentsFor(setup);
  let dial = pay.dial(setup.phone);
  let path: string[] = [];
  return {
    phone: setup.phone,
    async begin() {
      dial = pay.dial(setup.phone);
      path = [];
      return dial("");
    },
    async say(input) {
      path.push(input);
      return dial(path.join("*"));
    },
    async settle() {
      await pay.settle();
      return sms();
    },
    close: () => pay.close(),
  };
}

let telegramUser = 7_100_000;

async function telegramDriver(setup: ChannelSetup): Promise<Driver> {
  const { pay, sms } = await paymentsFor(setup);
  const fake: FakeTelegram = await startFakeTelegram();
  const chat = ++telegramUser;
  const bot = createBot({
    token: fake.token,
    db: setup.db,
    chatMenu: createChatMenu({
      db: setup.db,
      services: createMenuServices(setup.ctx, { planCacheMs: 0 }),
      settings: setup.settings,
      logger: silent,
      clock: setup.clock,
    }),
    logger: silent,
    apiRoot: fake.apiRoot,
    botInfo: fake.botInfo,
    clock: setup.clock,
  });
  const app = new Hono();
  app.route("/hooks/tg", createTelegramRoutes({ bot, secretToken: SECRET }));
  let shown = 0;
  // What was shown in the chat since the last call: each message's text and its buttons' labels.
  const fresh = () => {
    const calls = shownIn(fake, chat);
    const out = calls.slice(shown);
    shown = calls.length;
    return out;
  };
  const render = (calls: ReturnType<typeof fresh>) =>
    calls.map((c) => [String(c.payload.text), ...buttonsOf(c).map((b) => b.text)].join("\n")).join("\n");
  async function deliver(update: Record<string, unknown>) {
    const response = await app.request("/hooks/tg", {
      method: "POST",
      headers: { "content-type": "application/json", "x-telegram-bot-api-secret-token": SECRET },
      body: JSON.stringify(update),
    });
    if (response.status !== 200) throw new Error(`telegram webhook answered ${response.status}`);
    await sendQueued(setup.ctx, fake);
  }
  const asksForContact = (c: ReturnType<typeof fresh>[number]) => {
    const markup = c.payload.reply_markup as { keyboard?: { request_contact?: boolean }[][] } | undefined;
    return markup?.keyboard?.flat().some((b) => b.request_contact) ?? false;
  };
  return {
    phone: setup.phone,
    async begin() {
      await deliver(textUpdate(chat, "/start"));
      return render(fresh());
    },
    async say(input) {
      await deliver(textUpdate(chat, input));
      const answer = fresh();
      // A screen that needs the person's phone (sign-up, payment prompts) asks for their own contact
      // first: they share it, and the screen they were on is shown again.
      if (answer.some(asksForContact)) {
        await deliver(contactUpdate(chat, { user_id: chat, phone_number: setup.phone.slice(1) }));
        return render([...answer, ...fresh()]);
      }
      return render(answer);
    },
    async settle() {
      await pay.settle();
      await sendQueued(setup.ctx, fake);
      return [...sms(), ...fresh().map((c) => String(c.payload.text))];
    },
    async close() {
      await pay.close();
      await fake.close();
    },
  };
}

async function whatsAppCloudDriver(setup: ChannelSetup): Promise<Driver> {
  const { pay, sms } = await paymentsFor(setup);
  const fake: FakeWhatsApp = await startFakeWhatsApp();
  const wa = startWhatsApp(setup.ctx, fake, { settings: setup.settings });
  const waId = setup.phone.slice(1);
  let seen = 0;
  const fresh = () => {
    const sent = fake.sentTo(waId);
    const out = sent.slice(seen);
    seen = sent.length;
    return out.map((m) => [bodyOf(m) ?? "", ...optionsOf(m).map((o) => o.title)].join("\n"));
  };
  const say = async (input: string) => {
    const status = await wa.post(inbound(fake, waId, text(input)));
    if (status !== 200) throw new Error(`whatsapp webhook answered ${status}`);
    return fresh().join("\n");
  };
  return {
    phone: setup.phone,
    begin: () => say("menu"),
    say,
    async settle() {
      await pay.settle();
      await wa.channel.sendDue();
      return [...sms(), ...fresh()];
    },
    async close() {
      await wa.channel.stop();
      await pay.close();
      await fake.close();
    },
  };
}

async function whatsAppWebDriver(setup: ChannelSetup): Promise<Driver> {
  const { pay, sms } = await paymentsFor(setup);
  const world = startWorld(setup.ctx, setup.clock, {
    chatMenu: createChatMenu({
      db: setup.db,
      services: createMenuServices(setup.ctx, { planCacheMs: 0 }),
      settings: setup.settings,
      logger: silent,
      clock: setup.clock,
    }),
    // Pacing (against WhatsApp's burst bans) would wait, moving this channel's clock alone and with
    // it the plan change's proration: it is not what this test compares, so nothing is spaced.
    pacing: { perChatMs: 0, perMinute: 1_000_000 },
    sleep: async () => {},
  });
  await flush();
  world.client().login();
  const digits = setup.phone.slice(1);
  let seen = 0;
  const fresh = () => {
    const sent = world.client().sent.filter((m) => m.chatId.startsWith(digits));
    const out = sent.slice(seen);
    seen = sent.length;
    return out.map((m) => m.text);
  };
  // As the chat delivery worker does: what is due goes through the channel's sender.
  const deliver = async () => {
    for (;;) {
      const counts = await deliverDueChats({
        db: setup.db,
        clock: setup.clock,
        senders: [world.wa.sender],
        isp: settings.isp,
      });
      if (counts.sent + counts.retried + counts.dead + counts.toSms === 0) return;
    }
  };
  const say = async (input: string) => {
    await world.receive(fakeMessage({ from: `${digits}@c.us`, body: input }));
    await deliver();
    return fresh().join("\n");
  };
  return {
    phone: setup.phone,
    begin: () => say("menu"),
    say,
    async settle() {
      await pay.settle();
      await deliver();
      return [...sms(), ...fresh()];
    },
    async close() {
      await world.wa.stop();
      await pay.close();
    },
  };
}

export function startDriver(channel: ChannelName, setup: ChannelSetup): Promise<Driver> {
  switch (channel) {
    case "ussd":
      return ussdDriver(setup);
    case "telegram":
      return telegramDriver(setup);
    case "whatsapp-web":
      return whatsAppWebDriver(setup);
    case "whatsapp-cloud":
      return whatsAppCloudDriver(setup);
  }
}

const byId = <T extends { id: number }>(rows: T[]) => [...rows].sort((a, b) => a.id - b.id);

function countBy(values: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const v of [...values].sort()) counts[v] = (counts[v] ?? 0) + 1;
  return counts;
}

/**
 * Everything the conversation changed for the phone's customer, without ids, phone numbers,
 * account numbers, timestamps or the channel's own rows (chat sessions, links, channel sessions,
 * menu answers): what must be the same whichever channel the person used.
 */
export async function snapshotOf(db: Db, phone: string) {
  const [customer] = await db.select().from(customers).where(eq(customers.phone, phone));
  if (!customer) throw new Error(`no customer with ${phone}`);
  const planNames = new Map((await db.select().from(plans)).map((p) => [p.id, p.name]));
  const routerNames = new Map((await db.select().from(routers)).map((r) => [r.id, r.name]));
  const planName = (id: number | null) => (id === null ? null : (planNames.get(id) ?? `?${id}`));

  const subs = byId(await db.select().from(subscriptions).where(eq(subscriptions.customerId, customer.id)));
  const invs = byId(await db.select().from(invoices).where(eq(invoices.customerId, customer.id)));
  const pays = byId(
    await db
      .select()
      .from(payments)
      .where(or(eq(payments.customerId, customer.id), eq(payments.phone, phone))),
  );
  const intents = byId(await db.select().from(paymentIntents).where(eq(paymentIntents.phone, phone)));
  const sold = byId(await db.select().from(vouchers).where(eq(vouchers.soldToPhone, phone)));
  const notices = await db
    .select({ template: messageOutbox.template, status: messageOutbox.status })
    .from(messageOutbox)
    .where(
      and(
        or(eq(messageOutbox.recipient, phone), eq(messageOutbox.fallbackRecipient, phone)),
        ne(messageOutbox.template, CHAT_CONTENT_TEMPLATE),
      ),
    );

  const ids = (rows: { id: number }[]) => rows.map((r) => String(r.id));
  const entities: [string, string[]][] = [
    ["customer", [String(customer.id)]],
    ["subscription", ids(subs)],
    ["payment", ids(pays)],
    ["payment_intent", ids(intents)],
    ["voucher", ids(sold)],
  ];
  const audited = await db
    .select({ id: auditLog.id, action: auditLog.action, actorKind: auditLog.actorKind })
    .from(auditLog)
    .where(
      or(
        eq(auditLog.actorId, phone),
        ...entities
          .filter(([, list]) => list.length > 0)
          .map(([entity, list]) => and(eq(auditLog.entity, entity), inArray(auditLog.entityId, list))),
      ),
    )
    .orderBy(asc(auditLog.id));
  const subIds = subs.map((s) => s.id);
  const voucherIds = sold.map((v) => v.id);
  const provisioning = await db
    .select({ action: provisioningOutbox.action })
    .from(provisioningOutbox)
    .where(
      or(
        inArray(provisioningOutbox.subscriptionId, subIds.length > 0 ? subIds : [-1]),
        inArray(provisioningOutbox.voucherId, voucherIds.length > 0 ? voucherIds : [-1]),
      ),
    );

  return {
    customer: { name: customer.name, language: customer.language, status: customer.status },
    subscriptions: subs.map((s) => ({
      plan: planName(s.planId),
      nextPlan: planName(s.nextPlanId ?? null),
      status: s.status,
      router: s.routerId === null ? null : (routerNames.get(s.routerId) ?? `?${s.routerId}`),
      periodIndex: s.periodIndex,
    })),
    balanceCents: await ledgerSum(db, customer.id),
    invoices: invs.map((i) => ({ kind: i.kind, status: i.status, amountCents: i.amountCents })),
    payments: pays.map((p) => ({
      method: p.method,
      provider: p.provider,
      status: p.status,
      amountCents: p.amountCents,
      credited: p.customerId !== null,
    })),
    intents: intents.map((i) => ({
      purpose: i.purpose,
      status: i.status,
      amountCents: i.amountCents,
      plan: planName(i.planId ?? null),
      forCustomer: i.customerId !== null,
    })),
    vouchersSold: sold.map((v) => ({ plan: planName(v.planId), status: v.status })),
    notices: countBy(notices.map((n) => `${n.template}:${n.status}`)),
    audit: countBy(audited.map((a) => `${a.actorKind}:${a.action}`)),
    provisioning: countBy(provisioning.map((p) => p.action)),
  };
}

export type Snapshot = Awaited<ReturnType<typeof snapshotOf>>;
