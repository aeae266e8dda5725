import type { Actor, BillingContext } from "../../billing/context.ts";
import type { PaymentRequest, RequestPaymentResult } from "../../billing/intents/request.ts";
import type { Clock } from "../../clock.ts";
import { type Config, signingOf } from "../../config.ts";
import type { Db } from "../../db/client.ts";
import type { Logger } from "../../logger.ts";
import { createMenuServices } from "../../menu/services.ts";
import { menuSettingsFrom } from "../../ussd/index.ts";
import { type ChatDeliveryOptions, chatLeaseMs } from "../chat-delivery.ts";
import { startInboxRetry } from "../chat-inbox.ts";
import { type ChatMenu, createChatMenu } from "../chat-menu.ts";
import type { ChatSender } from "../chat-sender.ts";
import { type ChatWorker, startChatWorker } from "../chat-worker.ts";
import { ChatQueue } from "./chat-queue.ts";
import type { Timers, WhatsAppWebClientFactory } from "./client.ts";
import {
  CHANNEL,
  handleInbound,
  type InboundDeps,
  kindOf,
  type StoredMessage,
  takeInbound,
} from "./inbound.ts";
import type { PacingOptions } from "./pacing.ts";
import { createRealClient } from "./real-client.ts";
import { createWhatsAppWebSender } from "./sender.ts";
import { type Backoff, WhatsAppWebSession, type WhatsAppWebStatus } from "./session.ts";

export type { WhatsAppWebClient, WhatsAppWebMessage } from "./client.ts";
export { FakeWhatsAppWebClient, fakeMessage } from "./fake-client.ts";
export { createWhatsAppWebSender } from "./sender.ts";
export type { WhatsAppWebStatus } from "./session.ts";

/**
 * The WhatsApp Web channel (whatsapp-web.js): a linked device of the ISP's own WhatsApp number.
 * Messages run through the chat menu in the order each chat sent them; answers go to the outbox,
 * and `sender` (given to the chat delivery worker) sends them, paced, while the session is ready.
 */

export interface WhatsAppWebOptions {
  db: Db;
  clock: Clock;
  logger: Logger;
  /** The chat menu (its `onQueued` should wake the chat delivery worker). */
  chatMenu: ChatMenu;
  /** The app's data folder: the login is kept in `whatsapp-web/` inside it. */
  dataDir: string;
  /** The system's Chromium (WHATSAPP_WEB_CHROMIUM). */
  chromiumPath: string;
  /** Link with a pairing code for this number instead of a QR (WHATSAPP_WEB_PAIRING_PHONE). */
  pairingPhone?: string;
  servedCountries?: readonly string[];
  /** Another client than whatsapp-web.js (tests, a simulator). */
  clientFactory?: WhatsAppWebClientFactory;
  onQr?: (qr: string) => void | Promise<void>;
  onPairingCode?: (code: string) => void | Promise<void>;
  /** Told after an answer was queued outside the chat menu. */
  onQueued?: () => void;
  printQr?: (qr: string) => void;
  pacing?: Partial<PacingOptions>;
  /** Waits out a pacing slot, or a pause before a sender's number is asked again (tests: none). */
  sleep?: (ms: number) => Promise<void>;
  timers?: Timers;
  backoff?: Partial<Backoff>;
}

export interface WhatsAppWeb {
  sender: ChatSender;
  status(): WhatsAppWebStatus;
  /** Resolves once every message taken so far has been handled. */
  idle(): Promise<void>;
  /** Closes the browser and finishes the messages already taken. */
  stop(): Promise<void>;
}

export function startWhatsAppWeb(options: WhatsAppWebOptions): WhatsAppWeb {
  const logger = options.logger.child({ module: "whatsapp-web" });
  const pairingPhone = options.pairingPhone?.replace(/\D/g, "");
  if (pairingPhone !== undefined && !/^\d{7,15}$/.test(pairingPhone))
    throw new Error("WhatsApp Web pairing phone must be a number in international form");
  const deps: InboundDeps = {
    db: options.db,
    chatMenu: options.chatMenu,
    clock: options.clock,
    logger,
    ...(options.servedCountries ? { servedCountries: options.servedCountries } : {}),
    ...(options.onQueued ? { onQueued: options.onQueued } : {}),
    ...(options.sleep ? { sleep: options.sleep } : {}),
  };
  const queue = new ChatQueue((error, chat) =>
    // The chat is a phone number: only its tail goes to the log.
    logger.error({ err: error, chat: `…${chat.slice(-9)}` }, "whatsapp web message not answered"),
  );
  const session = new WhatsAppWebSession({
    createClient:
      options.clientFactory ??
      (() => createRealClient({ dataDir: options.dataDir, chromiumPath: options.chromiumPath })),
    logger,
    // One chain per sender keeps a chat's messages in order; chats do not wait for each other.
    onMessage: (message) => {
      if (kindOf(message) !== "ignore") queue.push(message.from, () => takeInbound(deps, message));
    },
    ...(pairingPhone ? { pairingPhone } : {}),
    ...(options.onQr ? { onQr: options.onQr } : {}),
    ...(options.onPairingCode ? { onPairingCode: options.onPairingCode } : {}),
    ...(options.printQr ? { printQr: options.printQr } : {}),
    ...(options.timers ? { timers: options.timers } : {}),
    ...(options.backoff ? { backoff: options.backoff } : {}),
  });
  const sender = createWhatsAppWebSender(session, {
    clock: options.clock,
    ...(options.pacing ? { pacing: options.pacing } : {}),
    ...(options.sleep ? { sleep: options.sleep } : {}),
  });
  void session.start();
  // Messages stored but not handled (a failure, a restart) are handled again from the inbox.
  const retry = startInboxRetry(deps, CHANNEL, (row) =>
    handleInbound(deps, row.chatId, row.payload as StoredMessage, row.id),
  );
  return {
    sender,
    status: () => session.status(),
    idle: () => queue.idle(),
    async stop() {
      await session.stop();
      await queue.idle();
      await retry.stop();
    },
  };
}

/**
 * The channel for the app from its configuration: the menu bound to the billing core, and the
 * delivery worker that sends its answers and the notices of customers who chose this chat.
 */
export function whatsappWebFrom(deps: {
  config: Config;
  ctx: BillingContext;
  logger: Logger;
  requestPayment?: (actor: Actor, input: PaymentRequest) => Promise<RequestPaymentResult>;
  /** Told of each login QR (the admin chat gets it as a picture). */
  onQr?: (qr: string) => void | Promise<void>;
}): { stop(): Promise<void>; status(): WhatsAppWebStatus } {
  const { db, clock } = deps.ctx;
  let kick = () => {};
  // The worker needs the channel's sender, and the channel the chat menu: bound once it exists.
  let worker: ChatWorker | undefined;
  // One send timeout for the worker and for the lease of the answers it is handed at once.
  const timing: Pick<ChatDeliveryOptions, "sendTimeoutMs"> = {};
  const channel = startWhatsAppWeb({
    db,
    clock,
    logger: deps.logger,
    chatMenu: createChatMenu({
      db,
      services: createMenuServices(deps.ctx, { requestPayment: deps.requestPayment }),
      settings: menuSettingsFrom(deps.config),
      logger: deps.logger.child({ module: "chat" }),
      clock,
      onQueued: () => kick(),
      sendAtOnce: { leaseMs: chatLeaseMs(timing), deliver: (rows, until) => worker?.deliver(rows, until) },
    }),
    dataDir: deps.config.DATA_DIR,
    chromiumPath: deps.config.WHATSAPP_WEB_CHROMIUM,
    ...(deps.config.WHATSAPP_WEB_PAIRING_PHONE
      ? { pairingPhone: deps.config.WHATSAPP_WEB_PAIRING_PHONE }
      : {}),
    servedCountries: deps.config.SERVED_COUNTRIES,
    onQueued: () => kick(),
    ...(deps.onQr ? { onQr: deps.onQr } : {}),
  });
  worker = startChatWorker({
    ...timing,
    db,
    clock,
    senders: [channel.sender],
    logger: deps.logger.child({ module: "whatsapp-web" }),
    ...signingOf(deps.config),
  });
  kick = worker.kick;
  return {
    status: () => channel.status(),
    async stop() {
      await channel.stop();
      await worker.stop();
    },
  };
}
