import type { Actor, BillingContext } from "../../billing/context.ts";
import type { PaymentRequest, RequestPaymentResult } from "../../billing/intents/request.ts";
import type { Logger } from "../../logger.ts";
import { createMenuServices } from "../../menu/services.ts";
import type { MenuSettings } from "../../menu/types.ts";
import type { Signing } from "../../messaging/render.ts";
import { createChatMenu } from "../chat-menu.ts";
import { startChatWorker } from "../chat-worker.ts";
import { createBot } from "./bot.ts";
import { type FakeTelegram, startFakeTelegram } from "./fake-api.ts";
import { createTelegramSender } from "./sender.ts";

/**
 * The Telegram bot with no Telegram: the fake Bot API on 127.0.0.1 and the real bot long-polling it,
 * so a newcomer can talk to the menu with curl (POST `/sandbox/updates` on the fake, see its docs)
 * and no token, webhook or public address is needed.
 */
export async function startSandboxTelegram(deps: {
  ctx: BillingContext;
  settings: MenuSettings;
  logger: Logger;
  requestPayment?: (actor: Actor, input: PaymentRequest) => Promise<RequestPaymentResult>;
  servedCountries?: readonly string[];
  /** Where the fake listens on 127.0.0.1 (`TELEGRAM_SANDBOX_PORT`); default any free port. */
  port?: number;
  /** What notices sent to linked chats say of the ISP (`signingOf`); default a sandbox name. */
  signing?: Signing;
}): Promise<{ fake: FakeTelegram; stop: () => Promise<void> }> {
  const fake = await startFakeTelegram(deps.port !== undefined ? { port: deps.port } : {});
  const worker = startChatWorker({
    db: deps.ctx.db,
    clock: deps.ctx.clock,
    senders: [createTelegramSender({ token: fake.token, apiRoot: fake.apiRoot })],
    logger: deps.logger.child({ module: "telegram" }),
    ...(deps.signing ?? { isp: "Tandao" }),
  });
  const chatMenu = createChatMenu({
    db: deps.ctx.db,
    services: createMenuServices(deps.ctx, { requestPayment: deps.requestPayment }),
    settings: deps.settings,
    logger: deps.logger.child({ module: "chat" }),
    clock: deps.ctx.clock,
    onQueued: worker.kick,
    sendAtOnce: worker,
  });
  const bot = createBot({
    token: fake.token,
    db: deps.ctx.db,
    chatMenu,
    logger: deps.logger,
    apiRoot: fake.apiRoot,
    botInfo: fake.botInfo,
    clock: deps.ctx.clock,
    onQueued: worker.kick,
    ...(deps.servedCountries ? { servedCountries: deps.servedCountries } : {}),
  });
  // Short polls: stopping waits for the poll under way, and the fake answers at once when an update comes.
  const running = bot.start({ timeout: 1 });
  running.catch((error: unknown) => deps.logger.error({ err: error }, "sandbox Telegram bot stopped"));
  return {
    fake,
    async stop() {
      await bot.stop();
      await running.catch(() => {});
      await worker.stop();
      await fake.close();
    },
  };
}
