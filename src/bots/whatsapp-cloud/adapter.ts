import type { Clock } from "../../clock.ts";
import type { Db } from "../../db/client.ts";
import type { Logger } from "../../logger.ts";
import type { ChatInput, ChatMenu, ChatReply } from "../chat-menu.ts";
import { answerInPlace, sentNoLaterThan } from "../chat-outbox.ts";
import type { ChatContent } from "../chat-sender.ts";
import { chatStateLanguage, readChatState } from "../chat-state.ts";
import { phoneChat } from "../phone-link.ts";
import { type InboundMessage, isUserId } from "./inbound.ts";
import { waText } from "./texts.ts";

/**
 * One stored WhatsApp message through the shared chat menu. Like the Telegram bot it keeps nothing in
 * memory: the link, the place in the menu and the answers (outbox rows) are all in PostgreSQL, so any
 * instance can take any delivery.
 */

export const CHANNEL = "whatsapp_cloud";

export interface WhatsAppDeps {
  db: Db;
  chatMenu: ChatMenu;
  clock: Clock;
  logger: Logger;
  /** Countries whose numbers may link (`SERVED_COUNTRIES`). */
  servedCountries?: readonly string[];
  /** Told after answers were queued. */
  onQueued?: () => void;
}

/**
 * The inbox payload of a message: what `handleMessage` needs to handle it again later. Its time is
 * Meta's stamp, but never later than `receivedAt`: a clock ahead must not stretch the 24-hour window
 * past Meta's own.
 */
export const inboxPayload = (message: InboundMessage, receivedAt: Date) => ({
  input: message.input,
  sentAt: (message.sentAt !== null && message.sentAt < receivedAt
    ? message.sentAt
    : receivedAt
  ).toISOString(),
});

export async function handleMessage(
  deps: WhatsAppDeps,
  /**
   * `chatId`: the sender's number without `+`, else their BSUID (see user-ids.ts). `sentAt`: when the
   * person sent it (the window's start); absent, when it is handled.
   */
  message: { chatId: string; input: ChatInput | null; sentAt?: Date },
  /** The chat_inbox row it was stored in: marked handled with the menu's new state. */
  inboxId?: number,
): Promise<void> {
  // Someone known by BSUID alone has not given their number: nothing links, nothing is charged.
  const hidden = isUserId(message.chatId);
  const { phone, newlyLinked } = hidden
    ? { phone: null, newlyLinked: null }
    : await phoneChat(deps.db, CHANNEL, message.chatId, deps.servedCountries);
  const text = (body: string): ChatContent => ({ kind: "text", text: body });
  if (message.input === null) {
    // Read only for what the menu cannot take (rare): a customer's language, else the chat's.
    const state = await readChatState(deps.db, CHANNEL, message.chatId, phone);
    const language = chatStateLanguage(state);
    const now = deps.clock.now();
    const sentAt = sentNoLaterThan(message.sentAt, now);
    await answerInPlace(deps.db, now, { channel: CHANNEL, chatId: message.chatId, sentAt }, [
      { channel: CHANNEL, to: message.chatId, language, content: text(waText(language, "unsupported")) },
    ]);
    deps.onQueued?.();
    return;
  }
  const input = message.input;
  const answer = (reply: ChatReply): ChatContent[] => {
    // Nothing changed: the person is told so and keeps the newest menu they were sent.
    if (reply.kind === "stale")
      return [text(waText(reply.language, input.kind === "option" ? "stale" : "typeNumber"))];
    const linked =
      newlyLinked !== null ? [text(waText(reply.view.language, "linked", { account: newlyLinked }))] : [];
    return [...linked, { kind: "view", view: reply.view }];
  };
  await deps.chatMenu.handle({
    channel: CHANNEL,
    chatId: message.chatId,
    phone,
    ...(hidden ? { phoneHidden: true } : {}),
    input,
    answer,
    ...(message.sentAt ? { sentAt: message.sentAt } : {}),
    ...(inboxId !== undefined ? { inboxId } : {}),
  });
}
