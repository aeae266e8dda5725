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

const messageSchema = z.object({
  id: z.string().min(1).max(256),
  from: z.string().regex(waIdPattern),
  type: z.string(),
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
  value: z.object({
    metadata: z.object({ phone_number_id: z.string() }).optional(),
    messages: z.array(z.unknown()).optional(),
  }),
});

export interface InboundMessage {
  /** Meta's message id (`wamid…`): a redelivery carries the same one. */
  id: string;
  /** The sender's WhatsApp id: their phone number without `+`. */
  waId: string;
  /** What it means to the menu; null for what the menu cannot take (a photo, a location…). */
  input: ChatInput | null;
}

function inputOf(message: z.infer<typeof messageSchema>): ChatInput | null {
  if (message.type === "text" && message.text) return { kind: "text", text: message.text.body };
  if (message.type === "interactive" && message.interactive) {
    const id = message.interactive.button_reply?.id ?? message.interactive.list_reply?.id;
    const match = id ? optionIdPattern.exec(id) : null;
    if (match) return { kind: "option", step: Number(match[1]), key: match[2]! };
  }
  return null;
}

const asArray = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);

/**
 * The messages of a webhook body sent to `phoneNumberId`. Delivery statuses (`value.statuses`) and
 * other fields are not for the menu and are left out; so are messages to another number of the same
 * business account, which that number's own service answers.
 */
export function messagesOf(body: unknown, phoneNumberId: string): InboundMessage[] {
  if (typeof body !== "object" || body === null) return [];
  const record = body as Record<string, unknown>;
  if (record.object !== "whatsapp_business_account") return [];
  const found: InboundMessage[] = [];
  for (const entry of asArray(record.entry)) {
    const changes =
      typeof entry === "object" && entry !== null ? (entry as { changes?: unknown }).changes : [];
    for (const raw of asArray(changes)) {
      const change = changeSchema.safeParse(raw);
      if (!change.success) continue;
      const to = change.data.value.metadata?.phone_number_id;
      if (to !== undefined && to !== phoneNumberId) continue;
      for (const rawMessage of change.data.value.messages ?? []) {
        const message = messageSchema.safeParse(rawMessage);
        if (!message.success) continue;
        found.push({ id: message.data.id, waId: message.data.from, input: inputOf(message.data) });
      }
    }
  }
  return found;
}
