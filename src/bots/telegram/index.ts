import { signingOf } from "../../config.ts";
import { startInboxRetry } from "../chat-inbox.ts";
import { startChatWorker } from "../chat-worker.ts";
import { handleStoredUpdate } from "./bot.ts";
import { createTelegramSender } from "./sender.ts";
import { type TelegramDeps, telegramWebhookFrom } from "./webhook.ts";

export { createBot } from "./bot.ts";
export { createTelegramRoutes } from "./routes.ts";
export { type TelegramDeps, telegramBotInfo, telegramWebhookFrom } from "./webhook.ts";

/**
 * The Telegram bot, its webhook routes and the worker that sends what it queued (menu answers and
 * notices to linked chats), with the retry loop for updates left unhandled, bound to the billing core.
 */
export function telegramFrom(deps: TelegramDeps) {
  const worker = startChatWorker({
    db: deps.ctx.db,
    clock: deps.ctx.clock,
    senders: [createTelegramSender({ token: deps.token })],
    logger: deps.logger.child({ module: "telegram" }),
    ...signingOf(deps.config),
  });
  const { bot, routes } = telegramWebhookFrom({ ...deps, onQueued: worker.kick, sendAtOnce: worker });
  const retry = startInboxRetry(
    { db: deps.ctx.db, clock: deps.ctx.clock, logger: deps.logger },
    "telegram",
    (row) => handleStoredUpdate(bot, row.payload, row.id),
  );
  return {
    bot,
    routes,
    async stop() {
      await retry.stop();
      await worker.stop();
    },
  };
}
