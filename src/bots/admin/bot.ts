import { Bot, type BotError, type Context } from "grammy";
import { addFeature } from "./features/add.ts";
import { adjustFeature } from "./features/adjust.ts";
import { broadcastFeature } from "./features/broadcast.ts";
import { buttonsFeature } from "./features/buttons.ts";
import { customerEditFeature } from "./features/customer-edit.ts";
import { exportFeature } from "./features/export.ts";
import { fallbackFeature } from "./features/fallback.ts";
import { helpFeature } from "./features/help.ts";
import { importFeature } from "./features/import.ts";
import { lookupFeature } from "./features/lookup.ts";
import { opsFeatures } from "./features/ops.ts";
import { placeFeature } from "./features/place.ts";
import { plansFeature } from "./features/plans.ts";
import { promptPaidFeature } from "./features/prompt-paid.ts";
import { reportFeature } from "./features/report.ts";
import { resubscribeFeature } from "./features/resubscribe.ts";
import { routerCertFeature } from "./features/router-cert.ts";
import { routerDialogFeature } from "./features/router-dialog.ts";
import { serviceFeature } from "./features/service.ts";
import { signupsFeature } from "./features/signups.ts";
import { soldFeature } from "./features/sold.ts";
import { statsFeature } from "./features/stats.ts";
import { subscriptionsFeature } from "./features/subscriptions.ts";
import { teamFeature } from "./features/team.ts";
import { unmatchedFeature } from "./features/unmatched.ts";
import { vouchersFeature } from "./features/vouchers.ts";
import { adminGate } from "./gate.ts";
import { type AdminBotDeps, createAdminKit, type Feature } from "./kit.ts";
import { queueAdminReplies } from "./queued-api.ts";

/**
 * The ISP's own Telegram bot: staff look subscribers up, record cash, suspend and resume, and place
 * unmatched payments from a private chat or a configured admin group. Only admins (table `admins`)
 * are served; anyone else is refused and the attempt audited (gate.ts). Every mutating command runs
 * one billing use-case in one transaction with its audit rows and the answer's outbox row;
 * destructive ones ask first with a button that works once (confirmations.ts). Answers go out
 * through the outbox on channel `telegram_admin`, sent by a chat worker of their own.
 *
 * What the features share is the kit (kit.ts); each feature is a file of features/.
 */

export type { AdminBotDeps, AdminNetwork } from "./kit.ts";

/** In order: a feature sees what those before it left; the fallback answers the rest. */
const FEATURES: readonly Feature[] = [
  routerDialogFeature,
  addFeature,
  helpFeature,
  teamFeature,
  lookupFeature,
  serviceFeature,
  unmatchedFeature,
  promptPaidFeature,
  plansFeature,
  subscriptionsFeature,
  signupsFeature,
  broadcastFeature,
  statsFeature,
  exportFeature,
  importFeature,
  reportFeature,
  vouchersFeature,
  soldFeature,
  adjustFeature,
  customerEditFeature,
  placeFeature,
  resubscribeFeature,
  routerCertFeature,
  ...opsFeatures,
  buttonsFeature,
  fallbackFeature,
];

export function createAdminBot(deps: AdminBotDeps): Bot {
  const kit = createAdminKit(deps);
  const bot = new Bot(deps.token, {
    ...(deps.botInfo ? { botInfo: deps.botInfo } : {}),
    client: {
      ...(deps.apiRoot ? { apiRoot: deps.apiRoot } : {}),
      canUseWebhookReply: (method) => method === "answerCallbackQuery",
    },
  });
  bot.api.config.use(queueAdminReplies({ db: kit.db, clock: kit.clock, onQueued: deps.onQueued }));
  bot.use(adminGate(kit));

  const onError = async (error: BotError<Context>) => {
    kit.log.error({ err: error.error, updateId: error.ctx.update.update_id }, "admin update failed");
    try {
      if (error.ctx.callbackQuery)
        await error.ctx.answerCallbackQuery({ text: "Something went wrong; nothing was changed." });
      else if (error.ctx.chat) await error.ctx.reply("Something went wrong; please try again.");
    } catch (apology) {
      kit.log.warn({ err: apology }, "admin apology not sent");
    }
  };
  bot.errorBoundary(onError, ...FEATURES.map((feature) => feature(kit)));
  bot.catch((error) =>
    kit.log.error({ err: error.error, updateId: error.ctx.update.update_id }, "admin update failed"),
  );
  return bot;
}
