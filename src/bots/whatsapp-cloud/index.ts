import { signingOf } from "../../config.ts";
import { createMenuServices } from "../../menu/services.ts";
import type { Signing } from "../../messaging/render.ts";
import { menuSettingsFrom } from "../../ussd/index.ts";
import { type ChatDeliveryOptions, deliverDueChats } from "../chat-delivery.ts";
import { startInboxRetry } from "../chat-inbox.ts";
import { parseTemplateMap, type TemplateMap } from "../chat-notices.ts";
import { startChatWorker } from "../chat-worker.ts";
import { CHANNEL } from "./adapter.ts";
import { createGraphClient } from "./graph.ts";
import { createCloudSender, SERVICE_WINDOW_MS } from "./sender.ts";
import {
  createWhatsAppWebhook,
  type WhatsAppWebhookOptions,
  type WhatsAppWebhookSettings,
} from "./webhook.ts";

export { createGraphClient, GraphApiError } from "./graph.ts";
export { createWhatsAppRoutes } from "./routes.ts";
export {
  createWhatsAppWebhook,
  type WhatsAppWebhookOptions,
  type WhatsAppWebhookSettings,
  whatsappCloudWebhookFrom,
} from "./webhook.ts";

export const DEFAULT_GRAPH_URL = "https://graph.facebook.com/v21.0";

export interface WhatsAppCloudOptions extends Omit<WhatsAppWebhookOptions, "onQueued"> {
  token: string;
  graphUrl?: string;
  /** What notices say of the ISP (`signingOf`); default a bare name. */
  signing?: Signing;
  /** Approved templates for notices outside the 24-hour window (`WHATSAPP_CLOUD_TEMPLATES`). */
  templates?: TemplateMap;
  /** Off: no delivery worker runs (tests send with `sendDue`). */
  background?: boolean;
}

/**
 * The WhatsApp Cloud API channel: the webhook (`createWhatsAppWebhook`), the retry loop for messages
 * left unhandled, and the worker that sends the answers and the notices of customers who chose this
 * chat (chat-delivery.ts).
 */
export function createWhatsAppCloud(options: WhatsAppCloudOptions) {
  const logger = options.logger.child({ module: "whatsapp-cloud" });
  const { db, clock } = options.ctx;
  const delivery: ChatDeliveryOptions = {
    db,
    clock,
    senders: [
      createCloudSender(
        createGraphClient({
          baseUrl: options.graphUrl ?? DEFAULT_GRAPH_URL,
          phoneNumberId: options.phoneNumberId,
          token: options.token,
        }),
      ),
    ],
    logger,
    ...(options.signing ?? { isp: "Tandao" }),
    windows: { whatsapp_cloud: SERVICE_WINDOW_MS },
    ...(options.templates ? { templates: { whatsapp_cloud: options.templates } } : {}),
  };
  const worker = (options.background ?? true) ? startChatWorker(delivery) : null;
  const webhook = createWhatsAppWebhook({
    ...options,
    onQueued: () => worker?.kick(),
    ...(worker ? { sendAtOnce: worker } : {}),
  });
  const retry = startInboxRetry({ db, clock, logger }, CHANNEL, webhook.handleRow);
  return {
    routes: webhook.routes,
    idle: webhook.idle,
    /** Sends what is due until nothing is (tests run the channel without its background worker). */
    async sendDue() {
      for (;;) {
        const counts = await deliverDueChats(delivery);
        if (counts.sent + counts.retried + counts.dead + counts.toSms === 0) return;
      }
    },
    /** Takes no more deliveries (Meta is told 503 and retries elsewhere) and finishes what it took. */
    async stop() {
      await webhook.stop();
      await retry.stop();
      await worker?.stop();
    },
  };
}

export type WhatsAppCloud = ReturnType<typeof createWhatsAppCloud>;

/** The channel for the app from its configuration, bound to the billing core. */
export function whatsappCloudFrom(deps: WhatsAppWebhookSettings & { token: string }): WhatsAppCloud {
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
    signing: signingOf(deps.config),
    ...(deps.config.WHATSAPP_CLOUD_TEMPLATES
      ? { templates: parseTemplateMap(deps.config.WHATSAPP_CLOUD_TEMPLATES) }
      : {}),
  });
}
