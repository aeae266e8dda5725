import type { Actor, BillingContext } from "../../billing/context.ts";
import type { PaymentRequest, RequestPaymentResult } from "../../billing/intents/request.ts";
import type { Config } from "../../config.ts";
import type { Logger } from "../../logger.ts";
import { createMenuServices } from "../../menu/services.ts";
import { menuSettingsFrom } from "../../ussd/index.ts";
import { startChatWorker } from "../chat-delivery.ts";
import { startInboxRetry } from "../chat-inbox.ts";
import { createChatMenu } from "../chat-menu.ts";
import { createBot, handleStoredUpdate } from "./bot.ts";
import { createTelegramRoutes } from "./routes.ts";
import { createTelegramSender } from "./sender.ts";

export { createBot } from "./bot.ts";
export { createTelegramRoutes } from "./routes.ts";

/**
 * The Telegram bot, its webhook routes and the worker that sends what it queued (menu answers and
 * notices to linked chats), bound to the billing core.
 */
export function telegramFrom(deps: {
  config: Config;
  ctx: BillingContext;
  logger: Logger;
  token: string;
  /** Sent by Telegram in `X-Telegram-Bot-Api-Secret-Token`; given to `setWebhook` as `secret_token`. */
  secretToken: string;
  requestPayment?: (actor: Actor, input: PaymentRequest) => Promise<RequestPaymentResult>;
}) {
  const settings = menuSettingsFrom(deps.config);
  const chatMenu = createChatMenu({
    db: deps.ctx.db,
    services: createMenuServices(deps.ctx, { requestPayment: deps.requestPayment }),
    settings,
    logger: deps.logger.child({ module: "chat" }),
    clock: deps.ctx.clock,
  });
  const worker = startChatWorker({
    db: deps.ctx.db,
    clock: deps.ctx.clock,
    senders: [createTelegramSender({ token: deps.token })],
    logger: deps.logger.child({ module: "telegram" }),
    isp: deps.config.ISP_NAME,
    timezone: deps.config.TIMEZONE,
  });
  const bot = createBot({
    token: deps.token,
    db: deps.ctx.db,
    chatMenu,
    logger: deps.logger,
    servedCountries: deps.config.SERVED_COUNTRIES,
    clock: deps.ctx.clock,
    onQueued: worker.kick,
  });
  const inbox = { db: deps.ctx.db, clock: deps.ctx.clock };
  const retry = startInboxRetry({ ...inbox, logger: deps.logger }, "telegram", (row) =>
    handleStoredUpdate(bot, row.payload, row.id),
  );
  return {
    bot,
    routes: createTelegramRoutes({ bot, secretToken: deps.secretToken, logger: deps.logger, inbox }),
    async stop() {
      await retry.stop();
      await worker.stop();
    },
  };
}
