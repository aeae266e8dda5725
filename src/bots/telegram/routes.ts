import { type Bot, webhookCallback } from "grammy";
import { type Context, Hono } from "hono";
import { limitBody } from "../../lib/body-limit.ts";
import { sameSecret } from "../../lib/same-secret.ts";
import type { Logger } from "../../logger.ts";

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
function honoAdapter(c: Context) {
  let resolveResponse: (response: Response) => void = () => {};
  return {
    get update() {
      return c.req.json();
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
 * update gets 400; an update the bot fails on is logged and answered 200, since Telegram would only
 * deliver it again (a button pressed too long ago, a refused answer) — never a 5xx.
 */
export function createTelegramRoutes(deps: { bot: Bot; secretToken: string; logger?: Logger }): Hono {
  if (deps.secretToken.length < 16)
    throw new Error("the Telegram webhook secret must be 16 characters or more");
  const app = new Hono();
  app.use("*", limitBody(MAX_UPDATE_BYTES));
  const handle = webhookCallback(deps.bot, honoAdapter, { secretToken: deps.secretToken });
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
    try {
      return await handle(c);
    } catch (error) {
      deps.logger?.error({ err: error }, "Telegram update failed");
      return c.json({ ok: true });
    }
  });
  app.all("*", (c) => c.text("Not Found", 404));
  return app;
}
