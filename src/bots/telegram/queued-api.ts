import type { Transformer } from "grammy";
import type { Clock } from "../../clock.ts";
import type { Db } from "../../db/client.ts";
import { enqueueChat } from "../chat-outbox.ts";

/**
 * The bot's outgoing messages as outbox rows. While an update is handled, `ctx.reply` and edits are
 * not sent to Telegram: they are written to `message_outbox` (content `raw`) and the chat delivery
 * worker makes the call after, with retries and per-chat order. What the bot gets back is a stand-in
 * for the message Telegram would return: no handler here reads it.
 *
 * Calls that are not messages (`answerCallbackQuery` goes back in the webhook's answer, `getMe`,
 * `setWebhook`, `getUpdates`) pass through.
 */
const QUEUED_METHODS: ReadonlySet<string> = new Set([
  "sendMessage",
  "editMessageText",
  "editMessageReplyMarkup",
]);

export function queueReplies(deps: { db: Db; clock: Clock; onQueued?: () => void }): Transformer {
  return async (previous, method, payload, signal) => {
    if (!QUEUED_METHODS.has(method)) return previous(method, payload, signal);
    const params = payload as Record<string, unknown>;
    const now = deps.clock.now();
    await enqueueChat(deps.db, now, [
      {
        channel: "telegram",
        to: String(params.chat_id),
        language: "en",
        content: { kind: "raw", method, payload: JSON.parse(JSON.stringify(params)) },
      },
    ]);
    deps.onQueued?.();
    const standIn = {
      message_id: 0,
      date: Math.floor(now.getTime() / 1000),
      chat: { id: Number(params.chat_id), type: "private" },
      text: typeof params.text === "string" ? params.text : "",
    };
    // The transformer's result type is the method's own; a stand-in message serves every queued one.
    return { ok: true, result: standIn } as unknown as Awaited<ReturnType<typeof previous>>;
  };
}
