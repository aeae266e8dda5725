import { z } from "zod";
import type { ChatInput } from "../chat-menu.ts";

/**
 * Meta's webhook body, read leniently: one bad entry or message is skipped, never the whole body,
 * and nothing here throws (a signed body answers 200 whatever it holds, or Meta retries it for days).
 */

/** `m:<step>:<key>`: the step binds an option to the screen it was shown on (ids ≤ 200 characters). */
const optionIdPattern = /^m:(\d{1,9}):(\d{1,3})$/;
export const optionId = (step: number, key: string) => `m:${step}:${key}`;

/** A WhatsApp id is the phone number in international form without `+`. */
const waIdPattern = /^\d{6,15}$/;

/**
 * A business-scoped user id (BSUID): country, optionally `ENT.` for a parent id, then up to 128
 * alphanumerics (`KE.1502576394655843`). It is never all digits, so it cannot be taken for a phone.
 */
export const userIdPattern = /^[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}$/;
export const isUserId = (chatId: string) => userIdPattern.test(chatId);

const messageSchema = z.object({
  id: z.string().min(1).max(256),
  // A sender who adopted a WhatsApp username may come without their number, by BSUID alone.
  from: z.string().regex(waIdPattern).optional(),
  // A malformed one is ignored rather than the message dropped: the number, if given, still serves.
  from_user_id: z.string().regex(userIdPattern).optional().catch(undefined),
  type: z.string(),
  // Unix seconds, as a string: when the person sent it. Unreadable, it is as if absent.
  timestamp: z
    .string()
    .regex(/^\d{1,12}$/)
    .optional()
    .catch(undefined),
  text: z.object({ body: z.string() }).optional(),
  interactive: z
    .object({
      type: z.string(),
      button_reply: z.object({ id: z.string() }).optional(),
      list_reply: z.object({ id: z.string() }).optional(),
    })
    .optional(),
});

const changeSchema = z.object({
  field: z.literal("messages"),
  value: z.object({ metadata: z.object({ phone_number_id: z.string() }).optional() }).passthrough(),
});

const asArray = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);

/**
 * The `value` of each `messages` change of a webhook body sent to `phoneNumberId`. Changes for
 * another number of the same business account are left out: that number's own service answers them.
 */
export function* changeValuesOf(body: unknown, phoneNumberId: string): Generator<Record<string, unknown>> {
  if (typeof body !== "object" || body === null) return;
  const record = body as Record<string, unknown>;
  if (record.object !== "whatsapp_business_account") return;
  for (const entry of asArray(record.entry)) {
    const changes =
      typeof entry === "object" && entry !== null ? (entry as { changes?: unknown }).changes : [];
    for (const raw of asArray(changes)) {
      const change = changeSchema.safeParse(raw);
      if (!change.success) continue;
      const to = change.data.value.metadata?.phone_number_id;
      if (to === undefined || to === phoneNumberId) yield change.data.value;
    }
  }
}

const contactSchema = z.object({
  wa_id: z.string().regex(waIdPattern).optional(),
  user_id: z.string().regex(userIdPattern),
});

export interface InboundMessage {
  /** Meta's message id (`wamid…`): a redelivery carries the same one. */
  id: string;
  /** The sender's WhatsApp id: their phone number without `+`; null when only their BSUID came. */
  waId: string | null;
  /** The sender's business-scoped user id, when Meta gave one. */
  userId: string | null;
  /** What it means to the menu; null for what the menu cannot take (a photo, a location…). */
  input: ChatInput | null;
  /** When the person sent it (Meta's `timestamp`); null when the message did not say. */
  sentAt: Date | null;
}

/** Message types that are nothing the person said to the menu. */
const NOT_SAID = new Set(["reaction", "system"]);

function inputOf(message: z.infer<typeof messageSchema>): ChatInput | null {
  if (message.type === "text" && message.text) return { kind: "text", text: message.text.body };
  if (message.type === "interactive" && message.interactive) {
    const id = message.interactive.button_reply?.id ?? message.interactive.list_reply?.id;
    const match = id ? optionIdPattern.exec(id) : null;
    if (match) return { kind: "option", step: Number(match[1]), key: match[2]! };
  }
  return null;
}

/**
 * The messages of a webhook body sent to `phoneNumberId`. Delivery statuses (`value.statuses`) and
 * other fields are not for the menu and are left out.
 */
export function messagesOf(body: unknown, phoneNumberId: string): InboundMessage[] {
  const found: InboundMessage[] = [];
  for (const value of changeValuesOf(body, phoneNumberId)) {
    const contacts = asArray(value.contacts).flatMap((raw) => {
      const contact = contactSchema.safeParse(raw);
      return contact.success ? [contact.data] : [];
    });
    for (const rawMessage of asArray(value.messages)) {
      const message = messageSchema.safeParse(rawMessage);
      if (!message.success) continue;
      const waId = message.data.from ?? null;
      const userId =
        message.data.from_user_id ??
        (waId !== null ? contacts.find((c) => c.wa_id === waId)?.user_id : undefined) ??
        null;
      // Neither a number nor a BSUID: there is no one to answer.
      if (waId === null && userId === null) continue;
      // A reaction to a menu (or its removal) and WhatsApp's own notes ("changed their number") are
      // no input: answered "type a number", a 👍 would get a scolding.
      if (NOT_SAID.has(message.data.type)) continue;
      found.push({
        id: message.data.id,
        waId,
        userId,
        input: inputOf(message.data),
        sentAt: message.data.timestamp === undefined ? null : new Date(Number(message.data.timestamp) * 1000),
      });
    }
  }
  return found;
}
