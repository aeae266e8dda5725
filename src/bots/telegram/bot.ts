import { autoRetry } from "@grammyjs/auto-retry";
import { and, eq } from "drizzle-orm";
import { Bot, type BotError, Composer, type Context, InlineKeyboard, Keyboard } from "grammy";
import type { UserFromGetMe } from "grammy/types";
import { type Clock, systemClock } from "../../clock.ts";
import type { Db } from "../../db/client.ts";
import { chatLinks, customers } from "../../db/schema/index.ts";
import type { Logger } from "../../logger.ts";
import type { Language } from "../../menu/types.ts";
import { type ChatInput, type ChatMenu, type ChatView, HOME_WORDS } from "../chat-menu.ts";
import { accountLinking, CHANNEL } from "./account-link.ts";
import { botText } from "./texts.ts";
import { visitorPhone } from "./visitor-phone.ts";

/**
 * Subscriber self-service on Telegram: the shared menu (src/bots/chat-menu.ts) as messages with
 * inline keyboards. Everything about a chat is in PostgreSQL (its link, its place in the menu), so
 * any instance can take any update and a restart loses nothing.
 */

export interface TelegramBotDeps {
  token: string;
  db: Db;
  chatMenu: ChatMenu;
  logger: Logger;
  /** Countries whose numbers may link (`SERVED_COUNTRIES`). */
  servedCountries?: readonly string[];
  /** Another Bot API server (the fake in tests, a local Bot API server). */
  apiRoot?: string;
  /** Skips `getMe` at start-up when known. */
  botInfo?: UserFromGetMe;
  /** Link-code expiry and a visitor's phone are timed by it (default: the system clock). */
  clock?: Clock;
  /**
   * The longest `retry_after` (seconds) a 429 is waited out before the call fails (default 30): in
   * webhook mode the update is held meanwhile, and Telegram gives up on a webhook after about a minute.
   */
  maxRetryDelaySeconds?: number;
}

/** `m:<step>:<key>`: the step binds the button to the screen it was shown on (64 bytes at most). */
const callbackPattern = /^m:(\d{1,9}):(\d{1,3})$/;

export const callbackData = (step: number, key: string) => `m:${step}:${key}`;

/** The customer's phone when this Telegram user is linked to one. */
async function linkedPhone(db: Db, userId: number): Promise<string | null> {
  const [row] = await db
    .select({ phone: customers.phone })
    .from(chatLinks)
    .innerJoin(customers, eq(customers.id, chatLinks.customerId))
    .where(and(eq(chatLinks.channel, CHANNEL), eq(chatLinks.chatId, String(userId))));
  return row?.phone ?? null;
}

function keyboard(view: ChatView): InlineKeyboard | undefined {
  if (view.end || view.options.length === 0) return undefined;
  const isNav = (key: string) => key === "0" || key === "00";
  // One choice a row, then Back and Home side by side; no empty row (Telegram refuses one).
  const rows = view.options
    .filter((o) => !isNav(o.key))
    .map((o) => [InlineKeyboard.text(`${o.key}. ${o.label}`, callbackData(view.step, o.key))]);
  const nav = view.options
    .filter((o) => isNav(o.key))
    .map((o) => InlineKeyboard.text(o.label, callbackData(view.step, o.key)));
  if (nav.length > 0) rows.push(nav);
  return InlineKeyboard.from(rows);
}

const contactKeyboard = () =>
  new Keyboard().requestContact(botText("en", "shareContact")).resized().oneTime();

const messageText = (view: ChatView) => view.lines.join("\n").trim() || "…";

function menu(deps: TelegramBotDeps, show: (ctx: Context, input: ChatInput) => Promise<void>) {
  const feature = new Composer<Context>();
  feature.on("message:text", async (ctx) => {
    const text = ctx.message.text;
    await show(ctx, { kind: "text", text });
    // A visitor starting over is told how to link, with Telegram's own share-contact button.
    if (HOME_WORDS.has(text.trim().toLowerCase()) && (await linkedPhone(deps.db, ctx.from.id)) === null) {
      await ctx.reply(botText("en", "linkHint"), {
        reply_markup: contactKeyboard(),
      });
    }
  });
  feature.on("callback_query:data", async (ctx) => {
    const match = callbackPattern.exec(ctx.callbackQuery.data);
    const message = ctx.callbackQuery.message;
    // Only a button the bot put in this user's own chat is theirs to press.
    if (!match || !message || message.chat.id !== ctx.from.id) {
      await ctx.answerCallbackQuery({ text: botText("en", "foreign") });
      return;
    }
    await show(ctx, { kind: "option", step: Number(match[1]), key: match[2]! });
  });
  return feature;
}

export function createBot(deps: TelegramBotDeps): Bot {
  const bot = new Bot(deps.token, {
    ...(deps.botInfo ? { botInfo: deps.botInfo } : {}),
    ...(deps.apiRoot ? { client: { apiRoot: deps.apiRoot } } : {}),
  });
  // Telegram's flood control answers 429 with `retry_after`: wait it out rather than drop the answer.
  bot.api.config.use(autoRetry({ maxDelaySeconds: deps.maxRetryDelaySeconds ?? 30, maxRetryAttempts: 3 }));
  const log = deps.logger.child({ module: "telegram" });
  const clock = deps.clock ?? systemClock;

  /** Runs the menu for this update and shows the answer: a new message, or the pressed one edited. */
  async function show(ctx: Context, input: ChatInput): Promise<void> {
    const from = ctx.from;
    if (!from) return;
    const chatId = String(from.id);
    const linked = await linkedPhone(deps.db, from.id);
    const phone = linked ?? (await visitorPhone(deps.db, CHANNEL, chatId));
    const reply = await deps.chatMenu.handle({ channel: CHANNEL, chatId, phone, input });
    const pressed = ctx.callbackQuery?.message;
    if (reply.kind === "stale") {
      // Answered, so the button stops spinning; the chat and its menu stay as they are.
      if (ctx.callbackQuery) await ctx.answerCallbackQuery({ text: botText(reply.language, "stale") });
      else await ctx.reply(botText(reply.language, "typeNumber"));
      return;
    }
    if (reply.view.needsPhone) {
      // The payment prompt would name no phone: the person's own contact comes first, then a refresh.
      if (ctx.callbackQuery) await ctx.answerCallbackQuery();
      await ctx.reply(botText(reply.view.language, "phoneNeeded"), { reply_markup: contactKeyboard() });
      return;
    }
    const markup = keyboard(reply.view);
    if (ctx.callbackQuery && pressed) {
      await ctx.answerCallbackQuery();
      await ctx.api.editMessageText(pressed.chat.id, pressed.message_id, messageText(reply.view), {
        ...(markup ? { reply_markup: markup } : {}),
      });
      return;
    }
    await ctx.reply(messageText(reply.view), markup ? { reply_markup: markup } : {});
  }

  const onError = async (error: BotError<Context>) => {
    log.error({ err: error.error, updateId: error.ctx.update.update_id }, "telegram update failed");
    const language: Language = "en";
    try {
      if (error.ctx.callbackQuery) await error.ctx.answerCallbackQuery({ text: botText(language, "failed") });
      else if (error.ctx.chat) await error.ctx.reply(botText(language, "failed"));
    } catch (apology) {
      log.warn({ err: apology }, "telegram apology not sent");
    }
  };

  // Groups and channels are not served: the menu is personal.
  const personal = bot.chatType("private");
  personal.errorBoundary(onError, accountLinking({ ...deps, clock }, show), menu(deps, show));
  // A button pressed anywhere else is still answered, or it keeps spinning.
  bot.on("callback_query", (ctx) => ctx.answerCallbackQuery({ text: botText("en", "foreign") }));
  bot.catch((error) => {
    log.error({ err: error.error, updateId: error.ctx.update.update_id }, "telegram update failed");
  });
  return bot;
}
