import { type Bot, webhookCallback } from "grammy";
import { Hono } from "hono";
import { limitBody } from "../../lib/body-limit.ts";

/** An update is a few kilobytes; anything much bigger is not Telegram. */
const MAX_UPDATE_BYTES = 256 * 1024;

/**
 * Telegram's webhook: POST `/` with one update as JSON. grammY checks the
 * `X-Telegram-Bot-Api-Secret-Token` header against `secretToken` and answers 401 when it is missing
 * or wrong, before the update reaches any handler.
 */
export function createTelegramRoutes(deps: { bot: Bot; secretToken: string }): Hono {
  if (deps.secretToken.length < 16)
    throw new Error("the Telegram webhook secret must be 16 characters or more");
  const app = new Hono();
  app.use("*", limitBody(MAX_UPDATE_BYTES));
  const handle = webhookCallback(deps.bot, "hono", { secretToken: deps.secretToken });
  app.post("/", (c) => handle(c));
  app.all("*", (c) => c.text("Not Found", 404));
  return app;
}
