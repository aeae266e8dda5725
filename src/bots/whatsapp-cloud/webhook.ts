import type { Actor, BillingContext } from "../../billing/context.ts";
import type { PaymentRequest, RequestPaymentResult } from "../../billing/intents/request.ts";
import type { Config } from "../../config.ts";
import type { Logger } from "../../logger.ts";
import { createMenuServices } from "../../menu/services.ts";
import type { MenuServices, MenuSettings } from "../../menu/types.ts";
import { menuSettingsFrom } from "../../ussd/index.ts";
import { handleStored, type InboundRecord, type InboxRow, storeInbound } from "../chat-inbox.ts";
import { type ChatInput, type ChatMenuDeps, createChatMenu } from "../chat-menu.ts";
import { CHANNEL, handleMessage, inboxPayload, type WhatsAppDeps } from "./adapter.ts";
import { createWhatsAppRoutes } from "./routes.ts";
import { failedStatusOf, failedStatusRecord, handleFailedStatus } from "./statuses.ts";
import { chatIdsOf } from "./user-ids.ts";

// Apart from index.ts, which adds the delivery worker: the Worker's bundle imports this file, and
// the delivery side brings the SMS client, whose module loads Node-only packages at import.

export interface WhatsAppWebhookOptions {
  ctx: BillingContext;
  logger: Logger;
  services: MenuServices;
  settings: MenuSettings;
  phoneNumberId: string;
  appSecret: string;
  verifyToken: string;
  servedCountries?: readonly string[];
  /** A conversation idle this long starts over (chat-menu's default otherwise). */
  idleMs?: number;
  /** Told after answers were queued (the delivery worker's kick, where one runs). */
  onQueued?: () => void;
  /** The delivery worker, where one runs: menu answers go to it as soon as they are saved. */
  sendAtOnce?: ChatMenuDeps["sendAtOnce"];
}

/**
 * The webhook alone: routes that check a delivery and store its messages (chat_inbox) before
 * answering, and their handling through the chat menu right after, its answers written as outbox
 * rows. Nothing here sends them or runs on a timer: the Cloudflare Worker serves `/hooks/wa` with
 * this, and the Node service's chat delivery worker sends the rows.
 */
export function createWhatsAppWebhook(options: WhatsAppWebhookOptions) {
  const logger = options.logger.child({ module: "whatsapp-cloud" });
  const { db, clock } = options.ctx;
  const deps: WhatsAppDeps = {
    db,
    chatMenu: createChatMenu({
      db,
      services: options.services,
      settings: options.settings,
      logger: options.logger.child({ module: "chat" }),
      clock,
      ...(options.onQueued ? { onQueued: options.onQueued } : {}),
      ...(options.sendAtOnce ? { sendAtOnce: options.sendAtOnce } : {}),
      ...(options.idleMs !== undefined ? { idleMs: options.idleMs } : {}),
    }),
    clock,
    logger,
    ...(options.onQueued ? { onQueued: options.onQueued } : {}),
    ...(options.servedCountries ? { servedCountries: options.servedCountries } : {}),
  };
  const handleRow = async (row: InboxRow) => {
    const failed = failedStatusOf(row.payload);
    if (failed) {
      await handleFailedStatus({ db, clock }, failed);
      return;
    }
    // A row stored before messages kept their time has none: it counts from now, as it used to.
    const sentAt = typeof row.payload.sentAt === "string" ? new Date(row.payload.sentAt) : null;
    await handleMessage(
      deps,
      {
        chatId: row.chatId,
        input: (row.payload.input ?? null) as ChatInput | null,
        ...(sentAt !== null && !Number.isNaN(sentAt.getTime()) ? { sentAt } : {}),
      },
      row.id,
    );
  };
  const handling = new Set<Promise<unknown>>();
  let stopped = false;
  const routes = createWhatsAppRoutes({
    appSecret: options.appSecret,
    verifyToken: options.verifyToken,
    phoneNumberId: options.phoneNumberId,
    logger: options.logger,
    async accept(messages, failed) {
      if (stopped) throw new Error("stopping");
      const now = clock.now();
      const chatIds = await chatIdsOf(db, now, messages);
      const stored = await storeInbound(db, now, [
        ...messages.map(
          (m, i): InboundRecord => ({
            channel: CHANNEL,
            externalId: m.id,
            chatId: chatIds[i]!,
            payload: inboxPayload(m, now),
          }),
        ),
        ...failed.map((status) => failedStatusRecord(CHANNEL, status)),
      ]);
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
    /** Handles a stored row again (the retry loop's work). */
    handleRow,
    /** Resolves once every stored message has been handled (its answers queued, not yet sent). */
    async idle() {
      while (handling.size > 0) await Promise.allSettled([...handling]);
    },
    /** Takes no more deliveries (Meta is told 503 and retries elsewhere) and finishes what it took. */
    async stop() {
      stopped = true;
      while (handling.size > 0) await Promise.allSettled([...handling]);
    },
  };
}

export interface WhatsAppWebhookSettings {
  config: Config;
  ctx: BillingContext;
  logger: Logger;
  phoneNumberId: string;
  appSecret: string;
  verifyToken: string;
  requestPayment?: (actor: Actor, input: PaymentRequest) => Promise<RequestPaymentResult>;
}

/** The webhook alone from the configuration (the Worker's `/hooks/wa`): no token, nothing sent. */
export function whatsappCloudWebhookFrom(deps: WhatsAppWebhookSettings) {
  return createWhatsAppWebhook({
    ctx: deps.ctx,
    logger: deps.logger,
    services: createMenuServices(deps.ctx, { requestPayment: deps.requestPayment }),
    settings: menuSettingsFrom(deps.config),
    phoneNumberId: deps.phoneNumberId,
    appSecret: deps.appSecret,
    verifyToken: deps.verifyToken,
    servedCountries: deps.config.SERVED_COUNTRIES,
  });
}
