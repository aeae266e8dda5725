import { Bot, type BotError, Composer, type Context } from "grammy";
import type { Update, UserFromGetMe } from "grammy/types";
import { type Clock, systemClock } from "../../clock.ts";
import type { Db } from "../../db/client.ts";
import type { Logger } from "../../logger.ts";
import type { Language } from "../../menu/types.ts";
import { type ChatInput, type ChatMenu, type ChatReply, HOME_WORDS } from "../chat-menu.ts";
import type { ChatContent } from "../chat-sender.ts";
import { type ChatState, chatStateLanguage } from "../chat-state.ts";
import { accountLinking, CHANNEL } from "./account-link.ts";
import { callbackPattern, contactKeyboard } from "./keyboard.ts";
import { queueReplies } from "./queued-api.ts";
import { botText } from "./texts.ts";
import { failedUpdates, inboxIdOf, settledUpdates, storedStateOf } from "./update-marks.ts";

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
  /** Told after messages were queued for the chat delivery worker. */
  onQueued?: () => void;
}

const text = (body: string): ChatContent => ({ kind: "text", text: body });

/** The person's language as the update's stored state has it (the customer's, else the chat's). */
const storedLanguage = (update: Context["update"]): Language => chatStateLanguage(storedStateOf.get(update));

/** Handles an update again from the inbox; throws when the bot fails on it again. */
export async function handleStoredUpdate(
  bot: Bot,
  update: Record<string, unknown>,
  /** Its chat_inbox row: marked handled with the menu's new state, as on the first attempt. */
  inboxId?: number,
): Promise<void> {
  if (!bot.isInited()) await bot.init();
  if (inboxId !== undefined) inboxIdOf.set(update, inboxId);
  await bot.handleUpdate(update as unknown as Update);
  if (failedUpdates.has(update)) throw new Error("the bot failed on this update again");
}

/**
 * The menu, for updates nothing before it acted on: the chat's state read with the update (by the
 * webhook's store) still holds.
 */
function menu(show: (ctx: Context, input: ChatInput, state?: ChatState) => Promise<void>) {
  const feature = new Composer<Context>();
  feature.on("message:text", (ctx) =>
    show(ctx, { kind: "text", text: ctx.message.text }, storedStateOf.get(ctx.update)),
  );
  feature.on("callback_query:data", async (ctx) => {
    const match = callbackPattern.exec(ctx.callbackQuery.data);
    const message = ctx.callbackQuery.message;
    // Only a button the bot put in this user's own chat is theirs to press.
    if (!match || !message || message.chat.id !== ctx.from.id) {
      await ctx.answerCallbackQuery({ text: botText(storedLanguage(ctx.update), "foreign") });
      return;
    }
    await show(
      ctx,
      { kind: "option", step: Number(match[1]), key: match[2]! },
      storedStateOf.get(ctx.update),
    );
  });
  return feature;
}

export function createBot(deps: TelegramBotDeps): Bot {
  const clock = deps.clock ?? systemClock;
  const bot = new Bot(deps.token, {
    ...(deps.botInfo ? { botInfo: deps.botInfo } : {}),
    client: {
      ...(deps.apiRoot ? { apiRoot: deps.apiRoot } : {}),
      // A button's spinner is stopped in the webhook's own answer: no call to Telegram while handling.
      canUseWebhookReply: (method) => method === "answerCallbackQuery",
    },
  });
  // Messages the bot sends become outbox rows, delivered by the chat worker after the update is done.
  bot.api.config.use(queueReplies({ db: deps.db, clock, onQueued: deps.onQueued }));
  const log = deps.logger.child({ module: "telegram" });

  /** Runs the menu for this update; its answer (a new message, or the pressed one edited) is queued. */
  async function show(ctx: Context, input: ChatInput, state?: ChatState): Promise<void> {
    const from = ctx.from;
    if (!from) return;
    const chatId = String(from.id);
    const pressed = ctx.callbackQuery?.message;
    const answer = (reply: ChatReply): ChatContent[] => {
      // A stale button is told so on the button itself; the chat and its menu stay as they are.
      if (reply.kind === "stale")
        return ctx.callbackQuery ? [] : [text(botText(reply.language, "typeNumber"))];
      // The screen needs the person's own phone (to pay from, or to find what it paid for): their
      // contact comes first, then a refresh.
      if (reply.view.needsPhone)
        return [
          {
            kind: "raw",
            method: "sendMessage",
            payload: {
              chat_id: from.id,
              text: botText(
                reply.view.language,
                reply.view.needsPhone === "find" ? "phoneToFind" : "phoneNeeded",
              ),
              reply_markup: contactKeyboard(reply.view.language),
            },
          },
        ];
      const view: ChatContent = {
        kind: "view",
        view: reply.view,
        ...(pressed ? { replaces: String(pressed.message_id) } : {}),
      };
      // A visitor starting over is told how to link, with Telegram's own share-contact button.
      const startingOver = input.kind === "text" && HOME_WORDS.has(input.text.trim().toLowerCase());
      if (!startingOver || reply.view.customer) return [view];
      const { language } = reply.view;
      const hint = {
        chat_id: from.id,
        text: botText(language, "linkHint"),
        reply_markup: contactKeyboard(language),
      };
      return [view, { kind: "raw", method: "sendMessage", payload: hint }];
    };
    const inboxId = inboxIdOf.get(ctx.update);
    const reply = await deps.chatMenu.handle({
      channel: CHANNEL,
      chatId,
      input,
      answer,
      ...(state ? { state } : {}),
      ...(inboxId !== undefined ? { inboxId } : {}),
    });
    // The input counted and its inbox row says so: what follows cannot make it count twice.
    if (reply.kind === "view" && inboxId !== undefined) settledUpdates.add(ctx.update);
    if (ctx.callbackQuery)
      await ctx.answerCallbackQuery(reply.kind === "stale" ? { text: botText(reply.language, "stale") } : {});
  }

  const onError = async (error: BotError<Context>) => {
    log.error({ err: error.error, updateId: error.ctx.update.update_id }, "telegram update failed");
    failedUpdates.add(error.ctx.update);
    // As read when the update was stored: the database may be what failed.
    const language = storedLanguage(error.ctx.update);
    try {
      if (error.ctx.callbackQuery) await error.ctx.answerCallbackQuery({ text: botText(language, "failed") });
      else if (error.ctx.chat) await error.ctx.reply(botText(language, "failed"));
    } catch (apology) {
      log.warn({ err: apology }, "telegram apology not sent");
    }
  };

  // Groups and channels are not served: the menu is personal.
  const personal = bot.chatType("private");
  personal.errorBoundary(onError, accountLinking({ ...deps, clock }, show), menu(show));
  // A button pressed anywhere else is still answered, or it keeps spinning.
  bot.on("callback_query", (ctx) => ctx.answerCallbackQuery({ text: botText("en", "foreign") }));
  bot.catch((error) => {
    log.error({ err: error.error, updateId: error.ctx.update.update_id }, "telegram update failed");
  });
  return bot;
}
