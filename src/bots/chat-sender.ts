import type { ChatChannel } from "../db/schema/index.ts";
import type { Language } from "../menu/types.ts";
import type { ChatView } from "./chat-menu.ts";

/**
 * The one interface every chat platform is sent through. Rows of `message_outbox` on a chat channel
 * carry a `ChatContent`; the chat delivery worker hands it to the channel's sender after the
 * transaction that wrote it has committed, with retries. Nothing else calls a chat API.
 */

export type ChatContent =
  /** Plain text (a notification rendered from the catalogs, a short answer such as "type a number"). */
  | { kind: "text"; text: string }
  /**
   * A menu screen: each channel shows its options its own way (buttons, a list, numbered lines).
   * `replaces` names the platform's id of the message whose button was pressed (Telegram edits it).
   */
  | { kind: "view"; view: ChatView; replaces?: string }
  /**
   * A message the platform only delivers as an approved template (WhatsApp Cloud API outside the
   * 24-hour window). `name` is the template's name at Meta; `params` fill its body in order.
   */
  | { kind: "template"; name: string; language: Language; params: string[] }
  /**
   * A call its channel's adapter prepared in the platform's own terms (Telegram: a Bot API method
   * and its parameters, such as a share-contact keyboard). Only that channel's sender takes it.
   */
  | { kind: "raw"; method: string; payload: Record<string, unknown> };

export type ChatSendFailure =
  /** Worth another try later (timeout, 5xx, 429). */
  | "retry"
  /**
   * The channel cannot send anything now, through no fault of this message (WhatsApp Web not
   * connected, the Cloud API's token refused): it waits without using up attempts, a notice until it
   * goes by SMS instead, an answer until it is too old to matter (chat-delivery.ts).
   */
  | "unavailable"
  /** This recipient cannot be reached on this channel (blocked the bot, not on WhatsApp…). */
  | "recipient"
  /** Free text is refused because the recipient has not written within the platform's window. */
  | "window"
  /** The message itself was refused (bad parameters, unknown template): another try will not help. */
  | "refused";

export class ChatSendError extends Error {
  constructor(
    readonly failure: ChatSendFailure,
    message: string,
    /** Seconds the platform asked us to wait (Telegram's `retry_after`). */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = "ChatSendError";
  }
}

export interface ChatSender {
  readonly channel: ChatChannel;
  /**
   * Delivers one message to `to` (the chat id on this channel); resolves with the platform's message
   * id. Throws `ChatSendError` for a failure it understands; anything else counts as `retry`.
   * `signal` aborts when the delivery worker stops waiting (its send timeout): the message is tried
   * again, so a request still running must be cancelled, and one not started yet never start.
   */
  send(to: string, content: ChatContent, signal?: AbortSignal): Promise<{ messageId: string }>;
}
