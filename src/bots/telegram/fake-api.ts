import { createHash } from "node:crypto";
import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import type { UserFromGetMe } from "grammy/types";
import { Hono } from "hono";
import { type FakeMessage, mountSandboxRoutes } from "./fake-sandbox.ts";
import { isImage, type UploadedFile, uploadPayload } from "./fake-uploads.ts";

export { commandEntities, type FakeMessage } from "./fake-sandbox.ts";

/**
 * A stand-in for the Telegram Bot API on 127.0.0.1, spoken to over real HTTP by grammY
 * (`client.apiRoot`): it records what the bot sent, serves queued updates to `getUpdates`, refuses a
 * wrong token with 401 as Telegram does, and answers 429 with `retry_after` when told to. Documents a
 * test says a user sent (`addDocument`) are served to `getFile` and downloaded as from Telegram.
 * People in the sandbox type, press buttons and read the chats through fake-sandbox.ts's routes.
 */

export interface SentCall {
  method: string;
  /** The parameters; an uploaded file is an `UploadedFile` in its field. */
  payload: Record<string, unknown>;
  /** The message sent or edited, when the call answered with one. */
  messageId?: number;
}

/** A document a user sent, as Telegram describes it in the message (`message.document`). */
export interface FakeDocument {
  file_id: string;
  file_unique_id: string;
  file_name: string;
  mime_type?: string;
  file_size: number;
}

/** Telegram lets a bot download files up to this size (`getFile` refuses larger ones). */
export const BOT_DOWNLOAD_LIMIT_BYTES = 20 * 1024 * 1024;

export interface FakeTelegram {
  apiRoot: string;
  token: string;
  botInfo: UserFromGetMe;
  /** Every accepted call, oldest first. */
  readonly calls: SentCall[];
  /** Every call answered 429 by `failNext`, oldest first. */
  readonly refused: SentCall[];
  callsOf(method: string): SentCall[];
  /**
   * The Bot API route for a call with a JSON body (`path`: `/bot<token>/<method>`), without the HTTP
   * around it: for a load generator that serves the fake over a bare HTTP server of its own (B7),
   * as hono's would be its busiest part.
   */
  callJson(path: string, body: string): Promise<{ status: number; body: string }>;
  /** The newest text of each message the bot sent, by id. */
  message(id: number): FakeMessage | undefined;
  /** Queues an update for `getUpdates` and returns its `update_id`. */
  pushUpdate(update: Record<string, unknown>): number;
  /** The next `count` calls of `method` answer 429 with `retry_after` seconds. */
  failNext(method: string, retryAfter: number, count?: number): void;
  /** The user blocked the bot: messages to their chat answer 403, as Telegram does. */
  block(chatId: number): void;
  /**
   * A document as a user would send it: the returned description goes in a message update
   * (`message.document`), and the fake serves its bytes to `getFile` and `/file/bot<token>/<path>`.
   */
  addDocument(file: { filename: string; bytes: Uint8Array | string; mimeType?: string }): FakeDocument;
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
  /** `port` 0 (the default): any free port, as tests want; the sandbox asks for a known one for curl. */
  options: { token?: string; username?: string; port?: number } = {},
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
  const refused: SentCall[] = [];
  const blocked = new Set<number>();
  const messages = new Map<number, FakeMessage>();
  const updates: { update_id: number }[] = [];
  const failures = new Map<string, { retryAfter: number; count: number }>();
  const waiters = new Set<() => void>();
  /** Documents users sent, by file_id, and their bytes by file_path (the download URL's tail). */
  const documents = new Map<string, FakeDocument & { file_path: string }>();
  const fileBytes = new Map<string, Uint8Array>();
  let nextMessageId = 1;
  let nextUpdateId = 1;
  let webhook = "";
  const queue = (update: Record<string, unknown>) => {
    const update_id = nextUpdateId++;
    updates.push({ ...update, update_id });
    wake();
    return update_id;
  };
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

  /** A photo or document: only as an upload (multipart), as a bot sends a file it made. */
  function sendFile(p: Record<string, unknown>, field: "photo" | "document") {
    if (blocked.has(Number(p.chat_id))) return refuse(403, "Forbidden: bot was blocked by the user");
    const file = p[field] as UploadedFile | undefined;
    if (!file || !(file.bytes instanceof Uint8Array) || file.bytes.length === 0)
      return refuse(400, `Bad Request: there is no ${field} in the request`);
    if (field === "photo" && !isImage(file.bytes)) return refuse(400, "Bad Request: IMAGE_PROCESS_FAILED");
    const message: FakeMessage = {
      message_id: nextMessageId++,
      chat: { id: Number(p.chat_id), type: "private" },
      date: Math.floor(Date.now() / 1000),
      text: typeof p.caption === "string" ? p.caption : "",
    };
    messages.set(message.message_id, message);
    return ok({ ...message, [field]: { file_name: file.filename, file_size: file.bytes.length } });
  }

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
      if (blocked.has(Number(p.chat_id))) return refuse(403, "Forbidden: bot was blocked by the user");
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
    sendPhoto: (p) => sendFile(p, "photo"),
    sendDocument: (p) => sendFile(p, "document"),
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
    // A message the fake never saw (one a test delivered as an update of its own) is deleted as Telegram would.
    deleteMessage(p) {
      const message = messages.get(Number(p.message_id));
      if (message && message.chat.id !== Number(p.chat_id))
        return refuse(400, "Bad Request: message to delete not found");
      messages.delete(Number(p.message_id));
      return ok(true);
    },
    answerCallbackQuery: (p) =>
      typeof p.callback_query_id === "string" ? ok(true) : refuse(400, "Bad Request: query is too old"),
    getFile(p) {
      const document = documents.get(String(p.file_id ?? ""));
      if (!document) return refuse(400, "Bad Request: invalid file_id");
      if (document.file_size > BOT_DOWNLOAD_LIMIT_BYTES) return refuse(400, "Bad Request: file is too big");
      const { file_id, file_unique_id, file_size, file_path } = document;
      return ok({ file_id, file_unique_id, file_size, file_path });
    },
  };

  let closing = false;
  const app = new Hono();
  // Registered before the Bot API route, which would otherwise take their paths.
  mountSandboxRoutes(app, {
    botInfo,
    messages,
    newMessageId: () => nextMessageId++,
    queue,
    refuse,
    ok,
  });
  /** A file's bytes, at the path `getFile` gave, as Telegram serves downloads. */
  app.get("/file/:bot/:path{.+}", (c) => {
    if (c.req.param("bot") !== `bot${token}`) return c.json(refuse(401, "Unauthorized"), 401);
    const bytes = fileBytes.get(c.req.param("path"));
    if (!bytes) return c.json(refuse(404, "Not Found"), 404);
    return c.body(bytes.slice().buffer as ArrayBuffer, 200, { "content-type": "application/octet-stream" });
  });
  /** Telegram's refusal of a call before its parameters are read: a wrong token, an unknown method. */
  const refusalOf = (bot: string, method: string) => {
    if (bot !== `bot${token}`) return { status: 401, answer: refuse(401, "Unauthorized") };
    if (!methods[method]) return { status: 404, answer: refuse(404, "Not Found: method not found") };
    return undefined;
  };
  /** Runs a call whose token and method were accepted; records it when it succeeds. */
  const answerCall = async (method: string, payload: Record<string, unknown>) => {
    const failure = failures.get(method);
    if (failure && failure.count > 0) {
      failure.count--;
      refused.push({ method, payload });
      return {
        status: 429,
        answer: refuse(429, `Too Many Requests: retry after ${failure.retryAfter}`, {
          retry_after: failure.retryAfter,
        }),
      };
    }
    const answer = (await methods[method]!(payload)) as {
      ok: boolean;
      error_code?: number;
      result?: unknown;
    };
    if (answer.ok && method !== "getUpdates" && method !== "getMe") {
      const result = answer.result as Partial<FakeMessage> | true;
      const messageId = typeof result === "object" ? result.message_id : undefined;
      calls.push({ method, payload, ...(messageId !== undefined ? { messageId } : {}) });
      wake();
    }
    return { status: answer.ok ? 200 : (answer.error_code ?? 400), answer };
  };
  /** A call with a JSON body (or none): its answer's status and JSON. */
  const answerJsonCall = async (bot: string, method: string, body: string) => {
    const refusal = refusalOf(bot, method);
    if (refusal) return refusal;
    let payload: Record<string, unknown>;
    try {
      payload = body === "" ? {} : (JSON.parse(body) as Record<string, unknown>);
    } catch {
      return { status: 400, answer: refuse(400, "Bad Request: can't parse JSON") };
    }
    return answerCall(method, payload);
  };
  type Status = 200 | 400 | 401 | 403 | 404 | 429;
  app.post("/:bot/:method", async (c) => {
    const bot = c.req.param("bot");
    const method = c.req.param("method");
    if (!(c.req.header("content-type") ?? "").startsWith("multipart/form-data")) {
      const { status, answer } = await answerJsonCall(bot, method, await c.req.text());
      return c.json(answer, status as Status);
    }
    const refusal = refusalOf(bot, method);
    if (refusal) return c.json(refusal.answer, refusal.status as Status);
    const payload = uploadPayload(Buffer.from(await c.req.arrayBuffer()), c.req.header("content-type") ?? "");
    const { status, answer } = await answerCall(method, payload);
    return c.json(answer, status as Status);
  });

  const server: ServerType = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: options.port ?? 0, hostname: "127.0.0.1" }, () => resolve(s));
  });
  const apiRoot = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    apiRoot,
    token,
    botInfo,
    calls,
    refused,
    callsOf: (method) => calls.filter((call) => call.method === method),
    async callJson(path, body) {
      const [, bot = "", method = ""] = /^\/([^/]+)\/([^/?]+)/.exec(path) ?? [];
      const { status, answer } = await answerJsonCall(bot, method, body);
      return { status, body: JSON.stringify(answer) };
    },
    message: (id) => messages.get(id),
    pushUpdate: queue,
    failNext(method, retryAfter, count = 1) {
      failures.set(method, { retryAfter, count });
    },
    block: (chatId) => blocked.add(chatId),
    addDocument(file) {
      const bytes = typeof file.bytes === "string" ? new Uint8Array(Buffer.from(file.bytes)) : file.bytes;
      const n = documents.size + 1;
      const extension = /\.[A-Za-z0-9]{1,8}$/.exec(file.filename)?.[0] ?? "";
      const document: FakeDocument & { file_path: string } = {
        file_id: `BQAC-fake-document-${n}`,
        file_unique_id: createHash("sha256").update(bytes).digest("base64url").slice(0, 16),
        file_name: file.filename,
        ...(file.mimeType ? { mime_type: file.mimeType } : {}),
        file_size: bytes.length,
        file_path: `documents/file_${n}${extension}`,
      };
      documents.set(document.file_id, document);
      fileBytes.set(document.file_path, bytes);
      const { file_path: _, ...described } = document;
      return described;
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
