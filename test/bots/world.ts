import { Hono } from "hono";
import type { BillingContext } from "../../src/billing/context.ts";
import { deliverDueChats } from "../../src/bots/chat-delivery.ts";
import { createChatMenu } from "../../src/bots/chat-menu.ts";
import { startChatWorker } from "../../src/bots/chat-worker.ts";
import { createBot } from "../../src/bots/telegram/bot.ts";
import {
  commandEntities,
  type FakeTelegram,
  type SentCall,
  startFakeTelegram,
} from "../../src/bots/telegram/fake-api.ts";
import { createTelegramRoutes } from "../../src/bots/telegram/routes.ts";
import { createTelegramSender } from "../../src/bots/telegram/sender.ts";
import type { Logger } from "../../src/logger.ts";
import { createMenuServices } from "../../src/menu/services.ts";
import { settings, silent } from "../ussd/world.ts";

export const SECRET = "tg-webhook-secret-0123456789";

/** A bot of its own (its own chat runner), talking to the fake. */
export function makeBot(
  ctx: BillingContext,
  fake: FakeTelegram,
  logger: Logger = silent,
  onQueued?: () => void,
) {
  const chatMenu = createChatMenu({
    db: ctx.db,
    services: createMenuServices(ctx, { planCacheMs: 0 }),
    settings,
    logger,
    clock: ctx.clock,
  });
  return createBot({
    token: fake.token,
    db: ctx.db,
    chatMenu,
    logger,
    apiRoot: fake.apiRoot,
    botInfo: fake.botInfo,
    clock: ctx.clock,
    ...(onQueued ? { onQueued } : {}),
  });
}

/**
 * Sends what the bot queued (as the chat delivery worker does) until nothing is due: a test sees the
 * bot's answers on the fake once this resolves, with no waiting on a timer.
 */
export async function sendQueued(ctx: BillingContext, fake: FakeTelegram): Promise<void> {
  const sender = createTelegramSender({ token: fake.token, apiRoot: fake.apiRoot });
  for (;;) {
    const counts = await deliverDueChats({ db: ctx.db, clock: ctx.clock, senders: [sender], isp: "Tandao" });
    if (counts.sent + counts.retried + counts.dead + counts.toSms === 0) return;
  }
}

/** The chat delivery worker as the app runs it, sending to the fake as soon as answers are queued. */
export function startTelegramWorker(ctx: BillingContext, fake: FakeTelegram) {
  return startChatWorker({
    db: ctx.db,
    clock: ctx.clock,
    senders: [createTelegramSender({ token: fake.token, apiRoot: fake.apiRoot })],
    isp: "Tandao",
  });
}

/** One running instance of the bot, its webhook mounted like the app mounts it. */
export function startInstance(ctx: BillingContext, fake: FakeTelegram, logger: Logger = silent) {
  const bot = makeBot(ctx, fake, logger);
  const app = new Hono();
  app.route(
    "/hooks/tg",
    createTelegramRoutes({ bot, secretToken: SECRET, inbox: { db: ctx.db, clock: ctx.clock } }),
  );
  return {
    bot,
    /** Delivers one update as Telegram would; grammY answers once the update was handled. */
    async deliver(update: Record<string, unknown>, secret: string | null = SECRET) {
      const status = await postUpdate(app, "/hooks/tg", update, secret, fake);
      await sendQueued(ctx, fake);
      return status;
    },
  };
}

/**
 * Posts one update to a bot's webhook as Telegram would (with `secret` in its header; null: none)
 * and returns the status. A call made in the webhook's own answer (answerCallbackQuery) is one
 * Telegram makes for the bot: it is recorded with the calls the fake received.
 */
export async function postUpdate(
  app: Hono,
  path: string,
  update: Record<string, unknown>,
  secret: string | null,
  fake: FakeTelegram,
): Promise<number> {
  const response = await app.request(path, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(secret === null ? {} : { "x-telegram-bot-api-secret-token": secret }),
    },
    body: JSON.stringify(update),
  });
  const answer = (await response.json().catch(() => null)) as { method?: string } | null;
  if (answer?.method) {
    const { method, ...payload } = answer;
    fake.calls.push({ method, payload });
  }
  return response.status;
}

export type Instance = ReturnType<typeof startInstance>;

let updateId = 1000;
const user = (id: number) => ({ id, is_bot: false, first_name: "Achieng" });
const privateChat = (id: number) => ({ id, type: "private", first_name: "Achieng" });
const now = () => Math.floor(Date.now() / 1000);

export function textUpdate(userId: number, text: string) {
  return {
    update_id: ++updateId,
    message: {
      message_id: updateId,
      date: now(),
      chat: privateChat(userId),
      from: user(userId),
      text,
      ...commandEntities(text),
    },
  };
}

export function contactUpdate(userId: number, contact: { user_id: number; phone_number: string }) {
  return {
    update_id: ++updateId,
    message: {
      message_id: updateId,
      date: now(),
      chat: privateChat(userId),
      from: user(userId),
      contact: { ...contact, first_name: "Achieng" },
    },
  };
}

/** A press of a button of `messageId` (a message the fake recorded), as Telegram sends it. */
export function pressUpdate(fake: FakeTelegram, userId: number, messageId: number, data: string) {
  const message = fake.message(messageId);
  if (!message) throw new Error(`no message ${messageId}`);
  return {
    update_id: ++updateId,
    callback_query: {
      id: `cb${updateId}`,
      from: user(userId),
      chat_instance: "ci",
      message: { ...message, from: { id: fake.botInfo.id, is_bot: true, first_name: "Tandao" } },
      data,
    },
  };
}

interface Button {
  text: string;
  callback_data: string;
}

/** The inline buttons of a sent or edited message, row by row flattened. */
export function buttonsOf(call: SentCall | undefined): Button[] {
  const markup = call?.payload.reply_markup as { inline_keyboard?: Button[][] } | undefined;
  return markup?.inline_keyboard?.flat() ?? [];
}

/** The data of the button whose label starts with `prefix`. */
export function button(call: SentCall | undefined, prefix: string): string {
  const found = buttonsOf(call).find((b) => b.text.startsWith(prefix));
  if (!found) throw new Error(`no button "${prefix}" in ${JSON.stringify(call?.payload)}`);
  return found.callback_data;
}

export { startFakeTelegram };

/** Every message the bot sent or edited in `chat`, oldest first. */
export function shownIn(fake: FakeTelegram, chat: number): SentCall[] {
  return fake.calls.filter(
    (c) => (c.method === "sendMessage" || c.method === "editMessageText") && c.payload.chat_id === chat,
  );
}

/** The newest message the bot sent or edited in `chat`. */
export function lastShownIn(fake: FakeTelegram, chat: number): SentCall {
  const last = shownIn(fake, chat).at(-1);
  if (!last) throw new Error(`nothing shown in ${chat}`);
  return last;
}

/** The newest message with inline buttons in `chat`. */
export function lastMenuIn(fake: FakeTelegram, chat: number): SentCall {
  const last = shownIn(fake, chat)
    .filter((c) => buttonsOf(c).length > 0)
    .at(-1);
  if (!last) throw new Error(`no menu in ${chat}`);
  return last;
}

/** The texts the bot showed in `chat`, oldest first. */
export const textsIn = (fake: FakeTelegram, chat: number) => shownIn(fake, chat).map((c) => c.payload.text);
