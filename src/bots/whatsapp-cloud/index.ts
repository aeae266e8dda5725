import type { Actor, BillingContext } from "../../billing/context.ts";
import type { PaymentRequest, RequestPaymentResult } from "../../billing/intents/request.ts";
import type { Config } from "../../config.ts";
import type { Logger } from "../../logger.ts";
import { createMenuServices } from "../../menu/services.ts";
import type { MenuServices, MenuSettings } from "../../menu/types.ts";
import { menuSettingsFrom } from "../../ussd/index.ts";
import { createChatMenu } from "../chat-menu.ts";
import { handleMessage, type WhatsAppDeps } from "./adapter.ts";
import { createGraphClient } from "./graph.ts";
import { ChatQueue } from "./queue.ts";
import { createWhatsAppRoutes } from "./routes.ts";

export { createGraphClient, GraphApiError } from "./graph.ts";
export { createWhatsAppRoutes } from "./routes.ts";

export const DEFAULT_GRAPH_URL = "https://graph.facebook.com/v21.0";

export interface WhatsAppCloudOptions {
  ctx: BillingContext;
  logger: Logger;
  services: MenuServices;
  settings: MenuSettings;
  token: string;
  phoneNumberId: string;
  appSecret: string;
  verifyToken: string;
  graphUrl?: string;
  servedCountries?: readonly string[];
  /** A conversation idle this long starts over (chat-menu's default otherwise). */
  idleMs?: number;
}

/**
 * The WhatsApp Cloud API channel: webhook routes that check and acknowledge deliveries, and a queue
 * that runs each message through the chat menu and sends the answer after the webhook was answered.
 */
export function createWhatsAppCloud(options: WhatsAppCloudOptions) {
  const logger = options.logger.child({ module: "whatsapp-cloud" });
  const deps: WhatsAppDeps = {
    db: options.ctx.db,
    chatMenu: createChatMenu({
      db: options.ctx.db,
      services: options.services,
      settings: options.settings,
      logger: options.logger.child({ module: "chat" }),
      clock: options.ctx.clock,
      ...(options.idleMs !== undefined ? { idleMs: options.idleMs } : {}),
    }),
    graph: createGraphClient({
      baseUrl: options.graphUrl ?? DEFAULT_GRAPH_URL,
      phoneNumberId: options.phoneNumberId,
      token: options.token,
    }),
    clock: options.ctx.clock,
    logger,
    ...(options.servedCountries ? { servedCountries: options.servedCountries } : {}),
  };
  const queue = new ChatQueue((error, chat) =>
    // The id is a phone number: only its tail goes to the log.
    logger.error({ err: error, chat: `…${chat.slice(-4)}` }, "whatsapp message not answered"),
  );
  let stopped = false;
  const routes = createWhatsAppRoutes({
    appSecret: options.appSecret,
    verifyToken: options.verifyToken,
    phoneNumberId: options.phoneNumberId,
    logger: options.logger,
    hasRoom: (count) => !stopped && queue.hasRoom(count),
    accept(messages) {
      for (const message of messages) queue.push(message.waId, () => handleMessage(deps, message));
    },
  });
  return {
    routes,
    /** Resolves once every accepted message has been handled and answered (or failed). */
    idle: () => queue.idle(),
    /** Takes no more deliveries (Meta is told 503 and retries elsewhere) and finishes what it took. */
    async stop() {
      stopped = true;
      await queue.idle();
    },
  };
}

export type WhatsAppCloud = ReturnType<typeof createWhatsAppCloud>;

/** The channel for the app from its configuration, bound to the billing core. */
export function whatsappCloudFrom(deps: {
  config: Config;
  ctx: BillingContext;
  logger: Logger;
  token: string;
  phoneNumberId: string;
  appSecret: string;
  verifyToken: string;
  requestPayment?: (actor: Actor, input: PaymentRequest) => Promise<RequestPaymentResult>;
}): WhatsAppCloud {
  return createWhatsAppCloud({
    ctx: deps.ctx,
    logger: deps.logger,
    services: createMenuServices(deps.ctx, { requestPayment: deps.requestPayment }),
    settings: menuSettingsFrom(deps.config),
    token: deps.token,
    phoneNumberId: deps.phoneNumberId,
    appSecret: deps.appSecret,
    verifyToken: deps.verifyToken,
    graphUrl: deps.config.WHATSAPP_CLOUD_GRAPH_URL,
    servedCountries: deps.config.SERVED_COUNTRIES,
  });
}
