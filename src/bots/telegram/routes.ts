import { type Bot, webhookCallback } from "grammy";
import type { Update } from "grammy/types";
import { type Context, Hono } from "hono";
import type { Clock } from "../../clock.ts";
import type { Db } from "../../db/client.ts";
import type { ChatChannel } from "../../db/schema/index.ts";
import { limitBody } from "../../lib/body-limit.ts";
import { sameSecret } from "../../lib/same-secret.ts";
import type { Logger } from "../../logger.ts";
import { createInboxStore, markFailed, markHandled, type StoredRow } from "../chat-inbox.ts";
import { failedUpdates, inboxIdOf, settledUpdates, storedStateOf } from "./update-marks.ts";

/** Below the inbox lease (chat-inbox.ts, 60 s): the retry loop never takes an update still in hand. */
const HANDLING_TIMEOUT_MS = 45_000;

/** An update is a few kilobytes; anything much bigger is not Telegram. */
const MAX_UPDATE_BYTES = 256 * 1024;

const isUpdate = (body: unknown): boolean =>
  typeof body === "object" &&
  body !== null &&
  !Array.isArray(body) &&
  Number.isInteger((body as { update_id?: unknown }).update_id);

/**
 * grammY's adapter for hono, except that a webhook reply (a Bot API call returned as the answer,
 * here `answerCallbackQuery`) goes out as the JSON grammY made: its own hono adapter encodes that
 * string a second time, which Telegram would not read.
 */
/** The update as the route read it: grammY gets that same object, so the route knows what failed. */
const parsedUpdates = new WeakMap<Request, Update>();

function honoAdapter(c: Context) {
  let resolveResponse: (response: Response) => void = () => {};
  return {
    get update() {
      return Promise.resolve(parsedUpdates.get(c.req.raw) ?? c.req.json<Update>());
    },
    header: c.req.header("x-telegram-bot-api-secret-token"),
    end: () => resolveResponse(c.body("")),
    respond: (json: string) => resolveResponse(c.body(json, 200, { "content-type": "application/json" })),
    unauthorized: () => resolveResponse(c.body("", 401)),
    handlerReturn: new Promise<Response>((resolve) => {
      resolveResponse = resolve;
    }),
  };
}

/**
 * Telegram's webhook: POST `/` with one update as JSON. The `X-Telegram-Bot-Api-Secret-Token`
 * header must carry `secretToken` (401 otherwise, before the body is read); a body that is not an
 * update gets 400. An update is stored (chat_inbox) before it is handled and answered 200 once stored;
 * one the bot fails on stays in the inbox as failed for the retry loop (index.ts); a database that
 * cannot store it answers 503, and Telegram delivers it again.
 */
export interface TelegramRouteDeps {
  bot: Bot;
  secretToken: string;
  logger?: Logger;
  /**
   * Where updates are stored before they are handled (chat_inbox): a redelivered update is dropped,
   * one that failed is handled again by the retry loop. Without it (tests of the route alone) an
   * update is handled as it comes.
   */
  inbox?: { db: Db; clock: Clock; channel?: ChatChannel };
}

/** The chat an update belongs to (its sender), for the inbox row. */
const chatOf = (update: Record<string, unknown>): string => {
  for (const value of Object.values(update)) {
    const from = (value as { from?: { id?: unknown } } | null)?.from?.id;
    if (typeof from === "number") return String(from);
  }
  return "";
};

export function createTelegramRoutes(deps: TelegramRouteDeps): Hono {
  if (deps.secretToken.length < 16)
    throw new Error("the Telegram webhook secret must be 16 characters or more");
  const app = new Hono();
  app.use("*", limitBody(MAX_UPDATE_BYTES));
  // Telegram waits about a minute for an answer; grammY's own 10 s would give up on an update still
  // being handled (and the retry loop would then handle it a second time).
  const handle = webhookCallback(deps.bot, honoAdapter, {
    secretToken: deps.secretToken,
    timeoutMilliseconds: HANDLING_TIMEOUT_MS,
  });
  // Updates arriving together are stored by one statement.
  const store = deps.inbox ? createInboxStore(deps.inbox.db, deps.inbox.clock) : undefined;
  app.post("/", async (c) => {
    if (!sameSecret(c.req.header("x-telegram-bot-api-secret-token"), deps.secretToken))
      return c.text("Unauthorized", 401);
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return c.text("Bad Request", 400);
    }
    if (!isUpdate(body)) return c.text("Bad Request", 400);
    const update = body as Record<string, unknown>;
    parsedUpdates.set(c.req.raw, body as Update);
    let stored: StoredRow | undefined;
    if (deps.inbox) {
      try {
        stored = await store!({
          // Each bot numbers its own updates: the admin bot's are kept apart from the subscribers'.
          channel: deps.inbox.channel ?? "telegram",
          externalId: String(update.update_id),
          chatId: chatOf(update),
          payload: update,
        });
      } catch (error) {
        // Not stored, so not answered 200: Telegram delivers it again.
        deps.logger?.error({ err: error }, "Telegram update could not be stored");
        return c.text("Unavailable", 503);
      }
      if (!stored) return c.json({ ok: true });
      inboxIdOf.set(update, stored.id);
      storedStateOf.set(update, stored.state);
    }
    let response: Response;
    let failure: unknown = null;
    try {
      response = await handle(c);
      if (failedUpdates.has(update)) failure = new Error("the bot failed on this update");
    } catch (error) {
      deps.logger?.error({ err: error }, "Telegram update failed");
      // Timed out: the handler may still finish; the lease keeps the retry loop off it meanwhile.
      if (error instanceof Error && /timed out|timeout/i.test(error.message)) return c.json({ ok: true });
      failure = error;
      response = c.json({ ok: true });
    }
    if (deps.inbox && stored && !settledUpdates.has(update)) {
      const { db, clock } = deps.inbox;
      const done = failure
        ? markFailed(db, stored.id, clock.now(), failure)
        : markHandled(db, stored.id, clock.now());
      await done.catch((error: unknown) => deps.logger?.error({ err: error }, "Telegram update not marked"));
    }
    return response;
  });
  app.all("*", (c) => c.text("Not Found", 404));
  return app;
}
