import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import type { UserFromGetMe } from "grammy/types";
import { Hono } from "hono";

/**
 * A stand-in for the Telegram Bot API on 127.0.0.1, spoken to over real HTTP by grammY
 * (`client.apiRoot`): it records what the bot sent, serves queued updates to `getUpdates`, refuses a
 * wrong token with 401 as Telegram does, and answers 429 with `retry_after` when told to.
 */

export interface SentCall {
  method: string;
  payload: Record<string, unknown>;
  /** The message sent or edited, when the call answered with one. */
  messageId?: number;
}

/** A message as the fake keeps it (what `sendMessage` / `editMessageText` left in the chat). */
export interface FakeMessage {
  message_id: number;
  chat: { id: number; type: "private" };
  date: number;
  text: string;
  reply_markup?: unknown;
}

export interface FakeTelegram {
  apiRoot: string;
  token: string;
  botInfo: UserFromGetMe;
  /** Every accepted call, oldest first. */
  readonly calls: SentCall[];
  callsOf(method: string): SentCall[];
  /** The newest text of each message the bot sent, by id. */
  message(id: number): FakeMessage | undefined;
  /** Queues an update for `getUpdates` and returns its `update_id`. */
  pushUpdate(update: Record<string, unknown>): number;
  /** The next `count` calls of `method` answer 429 with `retry_after` seconds. */
  failNext(method: string, retryAfter: number, count?: number): void;
  /** Resolves once `predicate` holds for the recorded calls (bounded: rejects after `timeoutMs`). */
  waitFor(predicate: (calls: SentCall[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

const ok = (result: unknown) => ({ ok: true, result });
const refuse = (code: number, description: string, parameters?: Record<string, unknown>) => ({
  ok: false,
  error_code: code,
  description,
  ...(parameters ? { parameters } : {}),
});

export async function startFakeTelegram(
  options: { token?: string; username?: string } = {},
): Promise<FakeTelegram> {
  const token = options.token ?? "123456:TEST-fake-token";
  const botInfo: FakeTelegram["botInfo"] = {
    id: Number(token.split(":")[0]),
    is_bot: true,
    first_name: "Tandao",
    username: options.username ?? "tandao_test_bot",
    can_join_groups: false,
    can_read_all_group_messages: false,
    supports_inline_queries: false,
    can_connect_to_business: false,
    has_main_web_app: false,
    has_topics_enabled: false,
    allows_users_to_create_topics: false,
    can_manage_bots: false,
    supports_join_request_queries: false,
  };
  const calls: SentCall[] = [];
  const messages = new Map<number, FakeMessage>();
  const updates: { update_id: number }[] = [];
  const failures = new Map<string, { retryAfter: number; count: number }>();
  const waiters = new Set<() => void>();
  let nextMessageId = 1;
  let nextUpdateId = 1;
  let webhook = "";
  const wake = () => {
    for (const waiter of [...waiters]) waiter();
  };

  /** Waits until something changes or `ms` pass, whichever is first. */
  const changed = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      waiters.add(done);
    });

  const methods: Record<string, (p: Record<string, unknown>) => Promise<unknown> | unknown> = {
    getMe: () => ok(botInfo),
    setWebhook: (p) => {
      webhook = String(p.url ?? "");
      return ok(true);
    },
    deleteWebhook: () => {
      webhook = "";
      return ok(true);
    },
    getWebhookInfo: () => ok({ url: webhook, has_custom_certificate: false, pending_update_count: 0 }),
    async getUpdates(p) {
      const offset = Number(p.offset ?? 0);
      // Confirming an offset forgets the updates before it, as Telegram does.
      while (updates.length > 0 && updates[0]!.update_id < offset) updates.shift();
      const deadline = Date.now() + Math.min(Number(p.timeout ?? 0), 50) * 1000;
      while (updates.length === 0 && Date.now() < deadline && !closing) await changed(deadline - Date.now());
      return ok(updates.slice(0, Number(p.limit ?? 100)));
    },
    sendMessage(p) {
      if (typeof p.text !== "string" || p.text.trim() === "")
        return refuse(400, "Bad Request: message text is empty");
      const message: FakeMessage = {
        message_id: nextMessageId++,
        chat: { id: Number(p.chat_id), type: "private" },
        date: Math.floor(Date.now() / 1000),
        text: p.text,
        ...(p.reply_markup ? { reply_markup: p.reply_markup } : {}),
      };
      messages.set(message.message_id, message);
      return ok(message);
    },
    editMessageText(p) {
      const message = messages.get(Number(p.message_id));
      if (!message || message.chat.id !== Number(p.chat_id))
        return refuse(400, "Bad Request: message to edit not found");
      if (message.text === p.text && JSON.stringify(message.reply_markup) === JSON.stringify(p.reply_markup))
        return refuse(400, "Bad Request: message is not modified");
      message.text = String(p.text);
      message.reply_markup = p.reply_markup;
      return ok(message);
    },
    editMessageReplyMarkup(p) {
      const message = messages.get(Number(p.message_id));
      if (!message) return refuse(400, "Bad Request: message to edit not found");
      message.reply_markup = p.reply_markup;
      return ok(message);
    },
    answerCallbackQuery: (p) =>
      typeof p.callback_query_id === "string" ? ok(true) : refuse(400, "Bad Request: query is too old"),
  };

  let closing = false;
  const app = new Hono();
  app.post("/:bot/:method", async (c) => {
    const bot = c.req.param("bot");
    if (bot !== `bot${token}`) return c.json(refuse(401, "Unauthorized"), 401);
    const method = c.req.param("method");
    const handler = methods[method];
    if (!handler) return c.json(refuse(404, "Not Found: method not found"), 404);
    const text = await c.req.text();
    let payload: Record<string, unknown>;
    try {
      payload = text === "" ? {} : (JSON.parse(text) as Record<string, unknown>);
    } catch {
      return c.json(refuse(400, "Bad Request: can't parse JSON"), 400);
    }
    const failure = failures.get(method);
    if (failure && failure.count > 0) {
      failure.count--;
      return c.json(
        refuse(429, `Too Many Requests: retry after ${failure.retryAfter}`, {
          retry_after: failure.retryAfter,
        }),
        429,
      );
    }
    const answer = (await handler(payload)) as { ok: boolean; error_code?: number; result?: unknown };
    if (answer.ok && method !== "getUpdates" && method !== "getMe") {
      const result = answer.result as Partial<FakeMessage> | true;
      const messageId = typeof result === "object" ? result.message_id : undefined;
      calls.push({ method, payload, ...(messageId !== undefined ? { messageId } : {}) });
      wake();
    }
    return c.json(answer, (answer.ok ? 200 : (answer.error_code ?? 400)) as 200 | 400 | 404);
  });

  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  const apiRoot = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    apiRoot,
    token,
    botInfo,
    calls,
    callsOf: (method) => calls.filter((call) => call.method === method),
    message: (id) => messages.get(id),
    pushUpdate(update) {
      const update_id = nextUpdateId++;
      updates.push({ ...update, update_id });
      wake();
      return update_id;
    },
    failNext(method, retryAfter, count = 1) {
      failures.set(method, { retryAfter, count });
    },
    async waitFor(predicate, timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(calls)) {
        if (Date.now() >= deadline) throw new Error(`fake Telegram: condition not met in ${timeoutMs} ms`);
        await changed(deadline - Date.now());
      }
    },
    async close() {
      closing = true;
      wake();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
