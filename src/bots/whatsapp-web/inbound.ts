import type { Clock } from "../../clock.ts";
import type { Db } from "../../db/client.ts";
import { idempotencyKeys } from "../../db/schema/index.ts";
import type { Logger } from "../../logger.ts";
import type { ChatMenu, ChatReply } from "../chat-menu.ts";
import { enqueueChat } from "../chat-outbox.ts";
import type { ChatContent } from "../chat-sender.ts";
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
}

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

/** The sender's number: in `from` for `<digits>@c.us`; asked of the contact for a hidden `@lid`. */
export async function senderDigits(message: WhatsAppWebMessage): Promise<string | null> {
  const [user = ""] = message.from.split("@");
  const digits = message.from.endsWith("@c.us") ? user : ((await message.contactNumber()) ?? "");
  const plain = digits.replace(/^\+/, "");
  return /^\d{7,15}$/.test(plain) ? plain : null;
}

/**
 * Claims a message id: true only for the first delivery. whatsapp-web.js can emit a message again
 * (after a reconnect), and a second run would move the menu on by a step the person never took.
 */
async function firstDelivery(db: Db, messageId: string, at: Date): Promise<boolean> {
  const claimed = await db
    .insert(idempotencyKeys)
    .values({ key: `${CHANNEL}:message:${messageId}`, createdAt: at })
    .onConflictDoNothing()
    .returning({ key: idempotencyKeys.key });
  return claimed.length > 0;
}

const text = (body: string): ChatContent => ({ kind: "text", text: body });

export async function handleInbound(deps: InboundDeps, message: WhatsAppWebMessage): Promise<void> {
  const kind = kindOf(message);
  if (kind === "ignore") return;
  const now = deps.clock.now();
  if (!(await firstDelivery(deps.db, message.id, now))) {
    deps.logger.debug({ messageId: message.id }, "whatsapp web message already handled");
    return;
  }
  const digits = await senderDigits(message);
  if (digits === null) {
    deps.logger.warn({ messageId: message.id }, "whatsapp web message without a phone number: not answered");
    return;
  }
  const { phone, newlyLinked } = await phoneChat(deps.db, CHANNEL, digits, deps.servedCountries);
  if (kind === "unsupported") {
    const content = text(waText("en", "unsupported"));
    await enqueueChat(deps.db, now, [{ channel: CHANNEL, to: digits, language: "en", content }]);
    deps.onQueued?.();
    return;
  }
  await deps.chatMenu.handle({
    channel: CHANNEL,
    chatId: digits,
    phone,
    input: { kind: "text", text: message.body },
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
