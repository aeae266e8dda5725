import type { Transformer } from "grammy";
import type { Clock } from "../../clock.ts";
import type { Executor } from "../../db/client.ts";
import { enqueueChat } from "../chat-outbox.ts";

/** The admin bot's outbox channel: the subscriber bot's worker never takes these rows. */
export const ADMIN_CHANNEL = "telegram_admin" as const;

const QUEUED_METHODS: ReadonlySet<string> = new Set([
  "sendMessage",
  "editMessageText",
  "editMessageReplyMarkup",
]);

/** A Bot API call for the admin chat worker, written with the caller's other rows (same transaction). */
export async function queueAdminCall(
  tx: Executor,
  now: Date,
  method: "sendMessage" | "editMessageText" | "editMessageReplyMarkup",
  payload: Record<string, unknown>,
): Promise<void> {
  await enqueueChat(tx, now, [
    {
      channel: ADMIN_CHANNEL,
      to: String(payload.chat_id),
      language: "en",
      content: { kind: "raw", method, payload: JSON.parse(JSON.stringify(payload)) },
    },
  ]);
}

/**
 * As the subscriber bot's `queueReplies` (src/bots/telegram/queued-api.ts), on the admin channel:
 * `ctx.reply` and edits become outbox rows sent by the admin chat worker after the update; the bot
 * gets a stand-in message back. Other calls (`answerCallbackQuery` in the webhook's answer, `getMe`)
 * pass through.
 */
export function queueAdminReplies(deps: { db: Executor; clock: Clock; onQueued?: () => void }): Transformer {
  return async (previous, method, payload, signal) => {
    if (!QUEUED_METHODS.has(method)) return previous(method, payload, signal);
    const params = payload as Record<string, unknown>;
    const now = deps.clock.now();
    await queueAdminCall(deps.db, now, method as "sendMessage", params);
    deps.onQueued?.();
    const standIn = {
      message_id: 0,
      date: Math.floor(now.getTime() / 1000),
      chat: { id: Number(params.chat_id), type: "private" },
      text: typeof params.text === "string" ? params.text : "",
    };
    return { ok: true, result: standIn } as unknown as Awaited<ReturnType<typeof previous>>;
  };
}
