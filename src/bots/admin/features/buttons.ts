import { Composer, type Context } from "grammy";
import { confirmPattern, pressConfirmation } from "../confirmations.ts";
import type { AdminKit } from "../kit.ts";
import { type AdminCommand, may } from "../roles.ts";
import { askService } from "./service.ts";

const CARD_BUTTON = /^(sus|res|pay):(#?[A-Za-z0-9][A-Za-z0-9_-]{0,31})$/;

/** Confirm/Cancel on a question, the buttons of a subscriber's card, and stale buttons. */
export function buttonsFeature(kit: AdminKit): Composer<Context> {
  const buttons = new Composer<Context>();
  buttons.callbackQuery(confirmPattern, async (ctx) => {
    const admin = kit.adminOf(ctx);
    const [, decision, token] = ctx.match as RegExpMatchArray;
    const message = ctx.callbackQuery.message;
    const outcome = await pressConfirmation(
      kit.billing,
      admin,
      decision as "ok" | "no",
      token!,
      message ? { chatId: message.chat.id, messageId: message.message_id } : null,
    );
    if (outcome.kind === "nothing" && outcome.refusedRole)
      await kit.refuseRole(ctx, admin, outcome.refusedRole);
    kit.deps.onQueued?.();
    await ctx.answerCallbackQuery({ text: outcome.toast });
  });
  buttons.callbackQuery(CARD_BUTTON, async (ctx) => {
    const admin = kit.adminOf(ctx);
    const [, what, account] = ctx.match as RegExpMatchArray;
    const needs: AdminCommand = what === "sus" ? "suspend" : what === "res" ? "resume" : "pay";
    if (!may(admin.role, needs)) {
      await kit.refuseRole(ctx, admin, needs);
      await ctx.answerCallbackQuery({ text: `Your role (${admin.role}) may not do that.` });
      return;
    }
    if (what === "pay")
      await kit.reply(
        ctx,
        `To record cash for ${account}, type:\n/pay ${account} <amount in shillings> [note]`,
      );
    else await askService(kit, ctx, admin, needs as "suspend" | "resume", [account!]);
    await ctx.answerCallbackQuery();
  });
  buttons.on("callback_query", (ctx) =>
    ctx.answerCallbackQuery({ text: "That button is no longer in use." }),
  );
  return buttons;
}
