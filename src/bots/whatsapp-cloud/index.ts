import type { Actor, BillingContext } from "../../billing/context.ts";
import type { PaymentRequest, RequestPaymentResult } from "../../billing/intents/request.ts";
import type { Config } from "../../config.ts";
import type { Logger } from "../../logger.ts";
import { createMenuServices } from "../../menu/services.ts";
import type { MenuServices, MenuSettings } from "../../menu/types.ts";
import { menuSettingsFrom } from "../../ussd/index.ts";
import {
  type ChatDeliveryOptions,
  deliverDueChats,
  parseTemplateMap,
  startChatWorker,
  type TemplateMap,
} from "../chat-delivery.ts";
import { handleStored, type InboxRow, startInboxRetry, storeInbound } from "../chat-inbox.ts";
import { type ChatInput, createChatMenu } from "../chat-menu.ts";
import { CHANNEL, handleMessage, inboxPayload, type WhatsAppDeps } from "./adapter.ts";
import { createGraphClient } from "./graph.ts";
import { createWhatsAppRoutes } from "./routes.ts";
import { createCloudSender, SERVICE_WINDOW_MS } from "./sender.ts";

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
  /** Signs notices. */
  isp?: string;
  timezone?: string;
  /** Approved templates for notices outside the 24-hour window (`WHATSAPP_CLOUD_TEMPLATES`). */
  templates?: TemplateMap;
  /** Off: no delivery worker runs (tests send with `sendDue`). */
  background?: boolean;
}

/**
 * The WhatsApp Cloud API channel: webhook routes that check a delivery and store its messages
 * (chat_inbox) before answering, their handling through the chat menu right after, and the worker
 * that sends the answers and the notices of customers who chose this chat (chat-delivery.ts).
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
    isp: options.isp ?? "Tandao",
    ...(options.timezone ? { timezone: options.timezone } : {}),
    windows: { whatsapp_cloud: SERVICE_WINDOW_MS },
    ...(options.templates ? { templates: { whatsapp_cloud: options.templates } } : {}),
  };
  const worker = (options.background ?? true) ? startChatWorker(delivery) : null;
  const kick = () => worker?.kick();
  const deps: WhatsAppDeps = {
    db,
    chatMenu: createChatMenu({
      db,
      services: options.services,
      settings: options.settings,
      logger: options.logger.child({ module: "chat" }),
      clock,
      onQueued: kick,
      ...(options.idleMs !== undefined ? { idleMs: options.idleMs } : {}),
    }),
    clock,
    logger,
    onQueued: kick,
    ...(options.servedCountries ? { servedCountries: options.servedCountries } : {}),
  };
  const handleRow = (row: InboxRow) =>
    handleMessage(deps, { waId: row.chatId, input: (row.payload.input ?? null) as ChatInput | null }, row.id);
  const retry = startInboxRetry({ db, clock, logger }, CHANNEL, handleRow);
  const handling = new Set<Promise<unknown>>();
  let stopped = false;
  const routes = createWhatsAppRoutes({
    appSecret: options.appSecret,
    verifyToken: options.verifyToken,
    phoneNumberId: options.phoneNumberId,
    logger: options.logger,
    async accept(messages) {
      if (stopped) throw new Error("stopping");
      const stored = await storeInbound(
        db,
        clock.now(),
        messages.map((m) => ({
          channel: CHANNEL,
          externalId: m.id,
          chatId: m.waId,
          payload: inboxPayload(m),
        })),
      );
      // Handled after the answer, one chat's messages in the order they came.
      const byChat = new Map<string, InboxRow[]>();
      for (const row of stored) byChat.set(row.chatId, [...(byChat.get(row.chatId) ?? []), row]);
      for (const rows of byChat.values()) {
        const work = (async () => {
          for (const row of rows) await handleStored({ db, clock, logger }, row, handleRow);
        })();
        handling.add(work);
        void work.finally(() => handling.delete(work));
      }
    },
  });
  return {
    routes,
    /** Resolves once every stored message has been handled (its answers queued, not yet sent). */
    async idle() {
      while (handling.size > 0) await Promise.allSettled([...handling]);
    },
    /** Sends what is due until nothing is (tests run the channel without its background worker). */
    async sendDue() {
      for (;;) {
        const counts = await deliverDueChats(delivery);
        if (counts.sent + counts.retried + counts.dead + counts.toSms === 0) return;
      }
    },
    /** Takes no more deliveries (Meta is told 503 and retries elsewhere) and finishes what it took. */
    async stop() {
      stopped = true;
      while (handling.size > 0) await Promise.allSettled([...handling]);
      await retry.stop();
      await worker?.stop();
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
    isp: deps.config.ISP_NAME,
    timezone: deps.config.TIMEZONE,
    ...(deps.config.WHATSAPP_CLOUD_TEMPLATES
      ? { templates: parseTemplateMap(deps.config.WHATSAPP_CLOUD_TEMPLATES) }
      : {}),
  });
}
