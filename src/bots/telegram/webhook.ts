import type { Bot } from "grammy";
import type { UserFromGetMe } from "grammy/types";
import type { Hono } from "hono";
import type { Actor, BillingContext } from "../../billing/context.ts";
import type { PaymentRequest, RequestPaymentResult } from "../../billing/intents/request.ts";
import type { Config } from "../../config.ts";
import type { Logger } from "../../logger.ts";
import { createMenuServices } from "../../menu/services.ts";
import { menuSettingsFrom } from "../../ussd/index.ts";
import { type ChatMenuDeps, createChatMenu } from "../chat-menu.ts";
import { createBot } from "./bot.ts";
import { createTelegramRoutes } from "./routes.ts";

// Apart from index.ts, which adds the delivery worker: the Worker's bundle imports this file, and
// the delivery side brings the SMS client, whose module loads Node-only packages at import.

export interface TelegramDeps {
  config: Config;
  ctx: BillingContext;
  logger: Logger;
  token: string;
  /** Sent by Telegram in `X-Telegram-Bot-Api-Secret-Token`; given to `setWebhook` as `secret_token`. */
  secretToken: string;
  requestPayment?: (actor: Actor, input: PaymentRequest) => Promise<RequestPaymentResult>;
}

/**
 * The bot and its webhook routes alone: an update is stored (chat_inbox), handled, and its answers
 * are written as outbox rows; nothing here sends them or runs in the background. The Cloudflare
 * Worker serves `/hooks/tg` with this, and the Node service's chat delivery worker sends the rows.
 */
export function telegramWebhookFrom(
  deps: TelegramDeps & {
    /** Known ahead (`telegramBotInfo`): the bot then never asks Telegram `getMe`. */
    botInfo?: UserFromGetMe;
    /** Told after answers were queued (the delivery worker's kick, where one runs). */
    onQueued?: () => void;
    /** The delivery worker, where one runs: menu answers go to it as soon as they are saved. */
    sendAtOnce?: ChatMenuDeps["sendAtOnce"];
  },
): { bot: Bot; routes: Hono } {
  const chatMenu = createChatMenu({
    db: deps.ctx.db,
    services: createMenuServices(deps.ctx, { requestPayment: deps.requestPayment }),
    settings: menuSettingsFrom(deps.config),
    logger: deps.logger.child({ module: "chat" }),
    clock: deps.ctx.clock,
    ...(deps.onQueued ? { onQueued: deps.onQueued } : {}),
    ...(deps.sendAtOnce ? { sendAtOnce: deps.sendAtOnce } : {}),
  });
  const bot = createBot({
    token: deps.token,
    db: deps.ctx.db,
    chatMenu,
    logger: deps.logger,
    servedCountries: deps.config.SERVED_COUNTRIES,
    clock: deps.ctx.clock,
    ...(deps.botInfo ? { botInfo: deps.botInfo } : {}),
    ...(deps.onQueued ? { onQueued: deps.onQueued } : {}),
  });
  const inbox = { db: deps.ctx.db, clock: deps.ctx.clock };
  return {
    bot,
    routes: createTelegramRoutes({ bot, secretToken: deps.secretToken, logger: deps.logger, inbox }),
  };
}

/**
 * What `getMe` would say about the bot, without asking: its id is the token's part before the colon
 * (Telegram's token format), its username is given (`TELEGRAM_BOT_USERNAME`). The bot reads only
 * these two (the username to tell `/link@ThisBot` from a command to another bot), so a webhook that
 * handles each update in a bot made for its request (the Worker) need not call Telegram first,
 * which would put Telegram's latency and failures into every update.
 */
export function telegramBotInfo(token: string, username: string | undefined): UserFromGetMe {
  const id = /^(\d{1,20}):/.exec(token)?.[1];
  if (!id) throw new Error("TELEGRAM_BOT_TOKEN is not a bot token (<bot id>:<secret>)");
  const name = (username ?? "").trim().replace(/^@/, "");
  if (!/^[A-Za-z][A-Za-z0-9_]{3,31}$/.test(name))
    throw new Error("TELEGRAM_BOT_USERNAME (the bot's @username) is required with TELEGRAM_BOT_TOKEN");
  return {
    id: Number(id),
    is_bot: true,
    first_name: name,
    username: name,
    can_join_groups: false,
    can_read_all_group_messages: false,
    supports_inline_queries: false,
    can_connect_to_business: false,
    has_main_web_app: false,
    has_topics_enabled: false,
    allows_users_to_create_topics: false,
    can_manage_bots: false,
    supports_join_request_queries: false,
  };
}
