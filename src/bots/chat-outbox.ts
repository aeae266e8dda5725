import { sql } from "drizzle-orm";
import type { Executor } from "../db/client.ts";
import { ts } from "../db/params.ts";
import { type ChatChannel, messageOutbox } from "../db/schema/index.ts";
import type { Language } from "../menu/types.ts";
import type { ChatContent } from "./chat-sender.ts";

/**
 * Chat answers are outbox rows like every other message: written with the state they answer, sent
 * by the chat delivery worker (chat-delivery.ts) after the commit, retried when the platform fails.
 */

/** The template name of a ready-made chat message (its `content` is sent as it is). */
export const CHAT_CONTENT_TEMPLATE = "chat";

export interface ChatOutgoing {
  channel: ChatChannel;
  /** The chat id on its channel. */
  to: string;
  language: Language;
  content: ChatContent;
}

/** The outbox rows of chat messages, in the order given (the worker sends a chat's rows by id). */
export function chatOutboxRows(now: Date, messages: readonly ChatOutgoing[]) {
  return messages.map((message) => ({
    channel: message.channel,
    recipient: message.to,
    language: message.language,
    template: CHAT_CONTENT_TEMPLATE,
    content: message.content as unknown as Record<string, unknown>,
    nextAttemptAt: now,
    createdAt: now,
  }));
}

export async function enqueueChat(tx: Executor, now: Date, messages: readonly ChatOutgoing[]): Promise<void> {
  if (messages.length === 0) return;
  await tx.insert(messageOutbox).values(chatOutboxRows(now, messages));
}

/** When a person sent a message, never later than `now`: a clock ahead must not stretch a window. */
export const sentNoLaterThan = (sentAt: Date | undefined, now: Date): Date =>
  sentAt !== undefined && sentAt < now ? sentAt : now;

/**
 * The answers to a message that leaves the chat where it was (a button from an older screen, a photo
 * the menu cannot read), queued by the statement that records when the person sent it as the chat's
 * newest message (`last_inbound_at`, never moved back): WhatsApp's 24-hour window runs from every
 * message the person sends, whether or not it moved the menu, so a notice after it may be free text.
 * A chat with no session yet keeps no such time (its notices go as they would before it wrote).
 */
export async function answerInPlace(
  tx: Executor,
  now: Date,
  chat: { channel: ChatChannel; chatId: string; sentAt: Date },
  messages: readonly ChatOutgoing[],
): Promise<void> {
  const moved = sql`update chat_sessions set last_inbound_at = greatest(last_inbound_at, ${ts(chat.sentAt)})
        where channel = ${chat.channel} and chat_id = ${chat.chatId}`;
  if (messages.length === 0) {
    await tx.execute(moved);
    return;
  }
  const rows = JSON.stringify(messages);
  // Rows come out of the select in order, so their ids (and so their sending order) follow it.
  await tx.execute(sql`with moved as (${moved})
        insert into message_outbox (channel, recipient, language, template, content, next_attempt_at, created_at)
        select m.value->>'channel', m.value->>'to', m.value->>'language', ${CHAT_CONTENT_TEMPLATE},
               m.value->'content', ${ts(now)}, ${ts(now)}
        from jsonb_array_elements(${rows}::jsonb) with ordinality as m(value, n)
        order by m.n`);
}
