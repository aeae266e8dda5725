import { setTimeout as sleepFor } from "node:timers/promises";
import type { Clock } from "../../clock.ts";
import type { Db } from "../../db/client.ts";
import type { Logger } from "../../logger.ts";
import { handleStored, storeInbound } from "../chat-inbox.ts";
import type { ChatMenu, ChatReply } from "../chat-menu.ts";
import { enqueueChat } from "../chat-outbox.ts";
import type { ChatContent } from "../chat-sender.ts";
import { chatStateLanguage, readChatState } from "../chat-state.ts";
import { phoneChat } from "../phone-link.ts";
import { waText } from "../whatsapp-cloud/texts.ts";
import type { WhatsAppWebMessage } from "./client.ts";

/**
 * One inbound WhatsApp Web message through the shared chat menu. The answers are written to the
 * outbox with the chat's new place in the menu; the chat delivery worker sends them through the
 * sender (sender.ts), paced. The chat id is the sender's phone in international digits.
 */

export const CHANNEL = "whatsapp";

export interface InboundDeps {
  db: Db;
  chatMenu: ChatMenu;
  clock: Clock;
  logger: Logger;
  servedCountries?: readonly string[];
  /** Told after an answer was queued outside the chat menu (the "unsupported" text). */
  onQueued?: () => void;
  /** Waits between lookups of a hidden sender's number; injected so tests need no real waits. */
  sleep?: (ms: number) => Promise<void>;
}

/**
 * A hidden (`@lid`) sender's number is asked of WhatsApp Web's page, which may be reloading: asked
 * again after these pauses before the message is given up (it is not stored before its chat is known,
 * and whatsapp-web.js does not emit it again).
 */
const LOOKUP_PAUSES_MS = [500, 2_000, 5_000];

/** What a person may send that is not text: answered with "please type a number". */
const MEDIA_TYPES: ReadonlySet<string> = new Set([
  "image",
  "video",
  "audio",
  "ptt",
  "document",
  "sticker",
  "location",
  "vcard",
  "multi_vcard",
  "poll_creation",
]);

export type MessageKind = "text" | "unsupported" | "ignore";

/**
 * Text goes to the menu; media gets a hint; the rest is not for the menu: our own messages, groups,
 * status updates, broadcasts, channels, and WhatsApp's system notices (encryption, calls, deletions),
 * which a person did not write and must not be answered.
 */
export function kindOf(message: WhatsAppWebMessage): MessageKind {
  if (message.fromMe || message.isStatus) return "ignore";
  if (!message.from.endsWith("@c.us") && !message.from.endsWith("@lid")) return "ignore";
  if (message.type === "chat") return "text";
  return MEDIA_TYPES.has(message.type) ? "unsupported" : "ignore";
}

/** `senderDigits`, asked again while the page cannot answer; null: no number, or no answer at all. */
async function lookUpSender(deps: InboundDeps, message: WhatsAppWebMessage): Promise<string | null> {
  const sleep = deps.sleep ?? ((ms: number) => sleepFor(ms));
  for (let attempt = 0; ; attempt++) {
    try {
      return await senderDigits(message);
    } catch (error) {
      const pause = LOOKUP_PAUSES_MS[attempt];
      if (pause === undefined) {
        deps.logger.error(
          { err: error, messageId: message.id },
          "whatsapp web: the sender's number could not be looked up; not answered",
        );
        return null;
      }
      await sleep(pause);
    }
  }
}

/** The sender's number: in `from` for `<digits>@c.us`; asked of the contact for a hidden `@lid`. */
export async function senderDigits(message: WhatsAppWebMessage): Promise<string | null> {
  const [user = ""] = message.from.split("@");
  const digits = message.from.endsWith("@c.us") ? user : ((await message.contactNumber()) ?? "");
  const plain = digits.replace(/^\+/, "");
  return /^\d{7,15}$/.test(plain) ? plain : null;
}

const text = (body: string): ChatContent => ({ kind: "text", text: body });

/** What is kept of a message in the inbox: enough to handle it again after a restart. */
export interface StoredMessage extends Record<string, unknown> {
  kind: "text" | "unsupported";
  body: string;
}

/**
 * Stores a message (chat_inbox, unique by WhatsApp's message id: one emitted again after a reconnect
 * is dropped) and handles it. A message whose handling failed, or was cut short by a restart, is
 * handled again by the inbox retry loop (index.ts).
 */
export async function takeInbound(deps: InboundDeps, message: WhatsAppWebMessage): Promise<void> {
  const kind = kindOf(message);
  if (kind === "ignore") return;
  const digits = await lookUpSender(deps, message);
  if (digits === null) {
    deps.logger.warn({ messageId: message.id }, "whatsapp web message without a phone number: not answered");
    return;
  }
  const payload: StoredMessage = { kind, body: kind === "text" ? message.body : "" };
  const [stored] = await storeInbound(deps.db, deps.clock.now(), [
    { channel: CHANNEL, externalId: message.id, chatId: digits, payload },
  ]);
  if (!stored) {
    deps.logger.debug({ messageId: message.id }, "whatsapp web message already handled");
    return;
  }
  await handleStored(deps, stored, (row) =>
    handleInbound(deps, row.chatId, row.payload as StoredMessage, row.id),
  );
}

/** One stored message through the chat menu; its answers are queued in the same statement. */
export async function handleInbound(
  deps: InboundDeps,
  digits: string,
  message: StoredMessage,
  /** The chat_inbox row it was stored in: marked handled with the menu's new state. */
  inboxId?: number,
): Promise<void> {
  const now = deps.clock.now();
  const { phone, newlyLinked } = await phoneChat(deps.db, CHANNEL, digits, deps.servedCountries);
  if (message.kind === "unsupported") {
    // Read only for what the menu cannot take: a customer's language, else the chat's.
    const state = await readChatState(deps.db, CHANNEL, digits, phone);
    const language = chatStateLanguage(state);
    const content = text(waText(language, "unsupported"));
    await enqueueChat(deps.db, now, [{ channel: CHANNEL, to: digits, language, content }]);
    deps.onQueued?.();
    return;
  }
  await deps.chatMenu.handle({
    channel: CHANNEL,
    chatId: digits,
    phone,
    input: { kind: "text", text: message.body },
    ...(inboxId !== undefined ? { inboxId } : {}),
    answer: (reply: ChatReply) => {
      const language = reply.kind === "view" ? reply.view.language : reply.language;
      const linked = newlyLinked !== null ? [text(waText(language, "linked", { account: newlyLinked }))] : [];
      // Stale here means another message of this chat was answered first: the newest menu stands.
      const answer: ChatContent =
        reply.kind === "view" ? { kind: "view", view: reply.view } : text(waText(language, "stale"));
      return [...linked, answer];
    },
  });
}
