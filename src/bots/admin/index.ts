import type { BillingContext } from "../../billing/context.ts";
import type { SecretBox } from "../../lib/secret-box.ts";
import type { Logger } from "../../logger.ts";
import { startInboxRetry } from "../chat-inbox.ts";
import { startChatWorker } from "../chat-worker.ts";
import { handleStoredUpdate } from "../telegram/bot.ts";
import { createTelegramRoutes } from "../telegram/routes.ts";
import { createTelegramSender } from "../telegram/sender.ts";
import { type AdminBotDeps, createAdminBot } from "./bot.ts";
import { resumeImportsAtStart } from "./features/import-run.ts";
import { type AdminNetwork, adminBackgroundFinished } from "./kit.ts";
import { ADMIN_CHANNEL } from "./queued-api.ts";
import { ensureOwner } from "./roles.ts";

export {
  ALERTS_JOB,
  adminAlertJobs,
  adminAlertRecipients,
  checkAdminAlerts,
  DAILY_SUMMARY_JOB,
  queueAdminAlert,
} from "./alerts.ts";
export { type AdminBotDeps, type AdminNetwork, createAdminBot } from "./bot.ts";
export { sendDailySummary } from "./daily-summary.ts";
export { adminBackgroundFinished } from "./kit.ts";
export { ADMIN_CHANNEL } from "./queued-api.ts";
export { ensureOwner, PERMISSIONS } from "./roles.ts";
export { startSandboxAdminTelegram } from "./sandbox.ts";

/**
 * The admin webhook is the subscriber bot's (src/bots/telegram/routes.ts): same secret-token
 * check, body limit and webhook-reply adapter, for another `Bot`.
 */
export const createAdminTelegramRoutes = createTelegramRoutes;

/**
 * The admin bot as the app runs it: the configured owner seeded (idempotent), the bot, its webhook
 * routes, and the chat worker for channel `telegram_admin` (the subscriber bot's worker has only the
 * `telegram` sender, so it never claims these rows).
 */
export async function adminTelegramFrom(deps: {
  ctx: BillingContext;
  logger: Logger;
  token: string;
  /** Sent by Telegram in `X-Telegram-Bot-Api-Secret-Token`; given to `setWebhook` as `secret_token`. */
  secretToken: string;
  ownerTelegramId: number;
  adminChatIds?: readonly number[];
  ispName?: string;
  /** The fake Bot API in the sandbox. */
  apiRoot?: string;
  /** The running network (`startNetwork`), for `/sync` and `/retry`. */
  network?: AdminNetwork;
  /** Seals router passwords typed in the chat (SECRET_KEY). */
  box?: SecretBox;
  /** `SERVED_COUNTRIES`: the phone numbers a customers file sent to the chat may hold. */
  servedCountries?: readonly string[];
  /** `HOTSPOT_LOGIN_URL`: where printed vouchers' QR codes log in. */
  hotspotLoginUrl?: string;
}) {
  await ensureOwner(deps.ctx, deps.ownerTelegramId);
  const worker = startChatWorker({
    db: deps.ctx.db,
    clock: deps.ctx.clock,
    senders: [createTelegramSender({ token: deps.token, apiRoot: deps.apiRoot, channel: ADMIN_CHANNEL })],
    logger: deps.logger.child({ module: "telegram-admin" }),
    isp: deps.ispName ?? "Tandao",
    timezone: deps.ctx.settings.timezone,
  });
  const botDeps: AdminBotDeps = {
    token: deps.token,
    ctx: deps.ctx,
    logger: deps.logger,
    adminChatIds: deps.adminChatIds,
    ownerTelegramId: deps.ownerTelegramId,
    ispName: deps.ispName,
    apiRoot: deps.apiRoot,
    network: deps.network,
    ...(deps.box ? { box: deps.box } : {}),
    ...(deps.servedCountries ? { servedCountries: deps.servedCountries } : {}),
    ...(deps.hotspotLoginUrl ? { hotspotLoginUrl: deps.hotspotLoginUrl } : {}),
    onQueued: worker.kick,
  };
  const bot = createAdminBot(botDeps);
  resumeImportsAtStart(botDeps);
  const inbox = { db: deps.ctx.db, clock: deps.ctx.clock, channel: ADMIN_CHANNEL };
  const retry = startInboxRetry({ ...inbox, logger: deps.logger }, ADMIN_CHANNEL, (row) =>
    handleStoredUpdate(bot, row.payload, row.id),
  );
  return {
    bot,
    routes: createAdminTelegramRoutes({ bot, secretToken: deps.secretToken, logger: deps.logger, inbox }),
    async stop() {
      // A `/sync` under way queues its report before the worker stops.
      await adminBackgroundFinished(deps.ctx.db);
      await retry.stop();
      await worker.stop();
    },
  };
}
