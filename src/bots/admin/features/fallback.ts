import { Composer, type Context } from "grammy";
import type { AdminKit } from "../kit.ts";

/** Anything no feature took: an unknown command, or text. Registered last. */
export function fallbackFeature(kit: AdminKit): Composer<Context> {
  const fallback = new Composer<Context>();
  fallback.on("message", async (ctx) => {
    const word = kit.commandWord(ctx);
    await kit.reply(ctx, word ? `Unknown command /${word}. Type /help.` : "Type /help for what you may do.");
  });
  return fallback;
}
