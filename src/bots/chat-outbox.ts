import type { Executor } from "../db/client.ts";
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
