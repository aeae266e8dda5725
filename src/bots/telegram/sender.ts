import { Api, GrammyError, HttpError, InputFile } from "grammy";
import type { ChatChannel } from "../../db/schema/index.ts";
import { type ChatContent, ChatSendError, type ChatSender } from "../chat-sender.ts";
import { createBotApiFetch } from "./bot-api-fetch.ts";
import { menuKeyboard, viewText } from "./keyboard.ts";

/** grammY types its signal as the `abort-controller` package's; at run time it is the platform's. */
type GrammySignal = Parameters<Api["sendMessage"]>[3];

/**
 * The Telegram side of the chat delivery worker: one Bot API call per outbox row. A 429 is not
 * waited out here: the row is retried after `retry_after`, so a flood-limited chat holds no worker.
 */
export function createTelegramSender(deps: {
  token: string;
  apiRoot?: string;
  /** The outbox channel this bot's rows are written on (the admin bot: `telegram_admin`). */
  channel?: ChatChannel;
}): ChatSender {
  const api = new Api(deps.token, {
    ...(deps.apiRoot ? { apiRoot: deps.apiRoot } : {}),
    fetch: createBotApiFetch(),
  });

  async function call(to: string, content: ChatContent, abort?: AbortSignal): Promise<number> {
    const chatId = Number(to);
    const signal = abort as GrammySignal;
    switch (content.kind) {
      case "text":
        return (await api.sendMessage(chatId, content.text.slice(0, 4096), {}, signal)).message_id;
      case "view": {
        const markup = menuKeyboard(content.view);
        const options = markup ? { reply_markup: markup } : {};
        if (content.replaces !== undefined) {
          try {
            await api.editMessageText(
              chatId,
              Number(content.replaces),
              viewText(content.view),
              options,
              signal,
            );
            return Number(content.replaces);
          } catch (error) {
            // The same screen again (a refresh) is not an error; a message too old or deleted to edit
            // gets the screen as a new message instead.
            if (error instanceof GrammyError && /message is not modified/i.test(error.description))
              return Number(content.replaces);
            if (!(error instanceof GrammyError && error.error_code === 400)) throw error;
          }
        }
        return (await api.sendMessage(chatId, viewText(content.view), options, signal)).message_id;
      }
      case "raw": {
        // Prepared by the bot (bot.ts): a Bot API method and its parameters for this chat.
        const result = (await api.raw[content.method as "sendMessage"](
          withFiles(content.payload) as Parameters<Api["raw"]["sendMessage"]>[0],
          signal,
        )) as unknown;
        return typeof result === "object" && result !== null && "message_id" in result
          ? Number((result as { message_id: unknown }).message_id)
          : 0;
      }
      case "template":
        throw new ChatSendError("refused", "Telegram has no message templates");
    }
  }

  return {
    channel: deps.channel ?? "telegram",
    async send(to, content, signal) {
      try {
        return { messageId: String(await call(to, content, signal)) };
      } catch (error) {
        if (error instanceof GrammyError) {
          if (error.error_code === 429)
            throw new ChatSendError("retry", error.description, error.parameters.retry_after);
          // Blocked by the user, or the chat is gone.
          if (error.error_code === 403) throw new ChatSendError("recipient", error.description);
          if (error.error_code >= 500) throw new ChatSendError("retry", error.description);
          throw new ChatSendError("refused", error.description);
        }
        if (error instanceof HttpError) throw new ChatSendError("retry", error.message);
        throw error;
      }
    },
  };
}

/**
 * A file in a raw row (`sendPhoto`, `sendDocument`): JSON cannot hold bytes, so a parameter written
 * as `{"$file": {"base64": …, "filename": …}}` is uploaded as that file (multipart).
 */
function withFiles(payload: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(payload)) {
    const file = (value as { $file?: { base64?: unknown; filename?: unknown } } | null)?.$file;
    out[key] =
      file && typeof file.base64 === "string"
        ? new InputFile(Buffer.from(file.base64, "base64"), String(file.filename ?? key))
        : value;
  }
  return out;
}
