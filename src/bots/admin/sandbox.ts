import type { BillingContext } from "../../billing/context.ts";
import type { SecretBox } from "../../lib/secret-box.ts";
import type { Logger } from "../../logger.ts";
import { startChatWorker } from "../chat-worker.ts";
import { type FakeTelegram, startFakeTelegram } from "../telegram/fake-api.ts";
import { createTelegramSender } from "../telegram/sender.ts";
import { type AdminBotDeps, createAdminBot } from "./bot.ts";
import { resumeImportsAtStart } from "./features/import-run.ts";
import { type AdminNetwork, adminBackgroundFinished } from "./kit.ts";
import { ADMIN_CHANNEL } from "./queued-api.ts";
import { ensureOwner } from "./roles.ts";

/**
 * The admin bot with no Telegram: a second fake Bot API (its own token and port, so the subscriber
 * bot's fake and this one never see each other's calls) and the admin bot long-polling it. Talk to
 * it with curl: `POST /sandbox/updates {"user": <owner id>, "text": "/help"}`, press a button with
 * `{"user": <owner id>, "press": "Confirm"}`, read the answers and their buttons at
 * `GET /sandbox/chats/<owner id>` (telegram/fake-sandbox.ts).
 */
export async function startSandboxAdminTelegram(deps: {
  ctx: BillingContext;
  logger: Logger;
  ownerTelegramId: number;
  adminChatIds?: readonly number[];
  /** Where the fake listens on 127.0.0.1; default any free port. */
  port?: number;
  ispName?: string;
  /** The running network, for `/sync` and `/retry`. */
  network?: AdminNetwork;
  /** Seals router passwords typed in the chat (SECRET_KEY). */
  box?: SecretBox;
  /** `SERVED_COUNTRIES`: the phone numbers a customers file sent to the chat may hold. */
  servedCountries?: readonly string[];
  hotspotLoginUrl?: string;
}): Promise<{ fake: FakeTelegram; stop: () => Promise<void> }> {
  await ensureOwner(deps.ctx, deps.ownerTelegramId);
  const fake = await startFakeTelegram({
    token: "700000:SANDBOX-admin-token",
    username: "tandao_admin_sandbox_bot",
    ...(deps.port !== undefined ? { port: deps.port } : {}),
  });
  const worker = startChatWorker({
    db: deps.ctx.db,
    clock: deps.ctx.clock,
    senders: [createTelegramSender({ token: fake.token, apiRoot: fake.apiRoot, channel: ADMIN_CHANNEL })],
    logger: deps.logger.child({ module: "telegram-admin" }),
    isp: deps.ispName ?? "Tandao",
    timezone: deps.ctx.settings.timezone,
  });
  const botDeps: AdminBotDeps = {
    token: fake.token,
    ctx: deps.ctx,
    logger: deps.logger,
    apiRoot: fake.apiRoot,
    botInfo: fake.botInfo,
    ownerTelegramId: deps.ownerTelegramId,
    ...(deps.adminChatIds ? { adminChatIds: deps.adminChatIds } : {}),
    ...(deps.ispName ? { ispName: deps.ispName } : {}),
    ...(deps.network ? { network: deps.network } : {}),
    ...(deps.box ? { box: deps.box } : {}),
    ...(deps.servedCountries ? { servedCountries: deps.servedCountries } : {}),
    ...(deps.hotspotLoginUrl ? { hotspotLoginUrl: deps.hotspotLoginUrl } : {}),
    onQueued: worker.kick,
  };
  const bot = createAdminBot(botDeps);
  resumeImportsAtStart(botDeps);
  const running = bot.start({ timeout: 1 });
  running.catch((error: unknown) => deps.logger.error({ err: error }, "sandbox admin bot stopped"));
  return {
    fake,
    async stop() {
      await bot.stop();
      await running.catch(() => {});
      await adminBackgroundFinished(deps.ctx.db);
      await worker.stop();
      await fake.close();
    },
  };
}
