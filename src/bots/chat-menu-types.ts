import type { Clock } from "../clock.ts";
import type { Db } from "../db/client.ts";
import type { ChatChannel } from "../db/schema/index.ts";
import type { Logger } from "../logger.ts";
import type { Screen } from "../menu/engine.ts";
import type { SessionCache } from "../menu/session-cache.ts";
import type { Language, MenuChoice, MenuServices, MenuSettings } from "../menu/types.ts";
import type { InboundRecord, StoredRow } from "./chat-inbox.ts";
import type { KnownChat, KnownChats } from "./chat-known.ts";
import type { ChatContent } from "./chat-sender.ts";
import type { ChatState } from "./chat-state.ts";
import type { ChatWorker } from "./chat-worker.ts";

/** What the chat menu (chat-menu.ts) takes and gives: the channels' adapters speak to it in these. */

/** Words that start over at the main menu, in both languages (compared case-insensitively). */
export const HOME_WORDS: ReadonlySet<string> = new Set(["menu", "hi", "start", "/start", "habari", "mwanzo"]);

export type ChatInput =
  /** What the person typed: a number, an amount, or a home word. */
  | { kind: "text"; text: string }
  /** A button: the choice's key and the step of the screen it was shown on. */
  | { kind: "option"; key: string; step: number }
  /**
   * Shows the current screen again without answering it (e.g. once a visitor shared their phone, the
   * payment prompt they were on, now naming that phone). An expired conversation shows the main menu.
   */
  | { kind: "refresh" };

export interface ChatRequest {
  channel: ChatChannel;
  /** The chat identity on its channel (Telegram: the user id). */
  chatId: string;
  /**
   * The phone this chat speaks for when the channel knows it (WhatsApp: the sender's own number;
   * null: none it may use). Absent: the chat's link to a customer, else the phone the chat shared as
   * a visitor (`chat-state.ts`).
   */
  phone?: string | null;
  /** The channel knows the person but not their number (a WhatsApp username): `phone` is null. */
  phoneHidden?: boolean;
  input: ChatInput;
  /**
   * When the person sent the input, by the platform's own clock (WhatsApp's 24-hour window runs from
   * it). Absent: when it is handled. A time after that is taken as that.
   */
  sentAt?: Date;
  /**
   * The messages that answer this input, made by the channel from the reply: they are written to the
   * outbox with the chat's new place in the menu (one statement), so an answer is sent exactly when
   * the input counted. Absent: the caller shows the reply itself (tests of the menu alone).
   */
  answer?: (reply: ChatReply) => ChatContent[];
  /**
   * The chat_inbox row this input was stored in: marked handled by the same statement that saves the
   * input, so it can never be handled again once it counted (and costs no statement of its own).
   */
  inboxId?: number;
  /**
   * The chat's state, read by the statement that stored the input (chat-inbox.ts), when nothing has
   * changed it since; absent: read now.
   */
  state?: ChatState;
  /** The message is not stored yet (then `inboxId` and `state` are absent). */
  unstored?: UnstoredMessage;
}

export interface ChatView {
  /** The text of the screen, without its choices. */
  lines: string[];
  /** What may be answered: adapters show them as buttons or numbered lines. */
  options: MenuChoice[];
  /** The conversation closed (an outcome): the next message starts at the main menu. */
  end: boolean;
  /** The chat's step after this answer: a button carries it, and only the newest step is accepted. */
  step: number;
  screen: string;
  language: Language;
  /** The chat speaks for a customer (else: the visitor's menu). */
  customer?: boolean;
  /**
   * A visitor (no phone) reached a screen that needs their own number: to ask M-Pesa to charge it
   * (`pay`), or to find what was bought with it (`find`). The adapter should ask for the person's
   * own number first, then send `refresh`. Absent when no phone is needed.
   */
  needsPhone?: "pay" | "find";
}

export type ChatReply =
  | { kind: "view"; view: ChatView }
  /** A button from an older screen, an expired conversation, or a lost race: nothing changed. */
  | { kind: "stale"; language: Language };

export interface ChatMenuDeps {
  db: Db;
  services: MenuServices;
  settings: MenuSettings;
  logger: Logger;
  clock: Clock;
  /** A conversation idle this long starts over at the main menu (default 10 minutes). */
  idleMs?: number;
  screens?: Record<string, Screen>;
  /** Only a speed-up (see SessionCache): a miss reads afresh. */
  cache?: SessionCache;
  /** Screens that prompt a payment from the user's phone (default `PAYMENT_SCREENS`). */
  paymentScreens?: ReadonlySet<string>;
  /** Told after answers were queued (the chat delivery worker sends them at once). */
  onQueued?: () => void;
  /**
   * Sends answers as soon as they are saved (the chat delivery worker): they are written leased to
   * it, so no pass claims them first. Absent (the Cloudflare Worker, which sends nothing), answers
   * wait for a pass of the Node service's worker.
   */
  sendAtOnce?: Pick<ChatWorker, "deliver" | "leaseMs">;
  /** Where the states of chats this process saved are kept, for their next message (chat-known.ts). */
  known?: KnownChats;
}

/** What handling a message came to: a reply, or nothing at all for a message already in the inbox. */
export type ChatOutcome = ChatReply | { kind: "repeated" };

export interface ChatMenu {
  handle(request: ChatRequest): Promise<ChatOutcome>;
}

/**
 * A message not stored yet (Telegram's webhook keeps it back for a chat whose state this process
 * kept, see chat-known.ts): the menu stores it before anything acts, or with its answer.
 */
export interface UnstoredMessage {
  record: InboundRecord;
  /** The chat's state as this process last saved it, and the screen it showed. */
  known: KnownChat;
  /** Stores the message as the webhook would have (chat_inbox, leased), reading the chat's state. */
  store(): Promise<StoredRow | undefined>;
  /**
   * Set by the menu once the message is in the inbox: its row, leased to this handler (to be marked
   * handled or failed as any stored message), or `settled` when nothing is left to mark (written
   * handled with its answer, or a redelivery).
   */
  inbox?: { id: number } | "settled";
}
