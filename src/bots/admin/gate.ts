import type { Context, MiddlewareFn } from "grammy";
import { audit } from "../../billing/audit.ts";
import type { AdminKit } from "./kit.ts";
import { commandWordIn } from "./parse.ts";
import { findAdmin, strangerActor } from "./roles.ts";

/**
 * The gate: admins only, in private chats or the configured admin chats. Anyone else is refused
 * (a command answered, a button toasted) and the attempt audited with their Telegram id; chatter in
 * a group that is not a command to this bot is ignored.
 */
export function adminGate(kit: AdminKit): MiddlewareFn<Context> {
  return async (ctx, next) => {
    const from = ctx.from;
    const chat = ctx.chat;
    if (!from || !chat || from.is_bot) return;
    if (!ctx.message && !ctx.callbackQuery) return;
    // A file's command is its caption (a CSV sent with `/import`); other captions are chatter.
    const file = ctx.message?.document !== undefined;
    const entities = file ? ctx.message?.caption_entities : ctx.message?.entities;
    const commandText = (file ? ctx.message?.caption : ctx.message?.text) ?? "";
    const isCommand = entities?.some((e) => e.type === "bot_command" && e.offset === 0) ?? false;
    // Talk in a group that is not a command to this bot is none of its business.
    if (!ctx.callbackQuery && chat.type !== "private") {
      if (!isCommand) return;
      const addressee = /^\/[A-Za-z0-9_]+@(\w+)/.exec(commandText)?.[1];
      if (addressee && addressee.toLowerCase() !== ctx.me.username.toLowerCase()) return;
    }
    const adminChat = chat.type === "private" || kit.adminChats.has(chat.id);
    const admin = await findAdmin(kit.db, from.id);
    if (admin && adminChat) {
      kit.admit(ctx, admin);
      await next();
      return;
    }
    const reason = admin ? "not an admin chat" : "not an admin";
    await kit.inTx(async (tx, _, now) => {
      await audit(tx, strangerActor(from.id), now, {
        action: "admin.refused",
        entity: "telegram_user",
        entityId: from.id,
        reason,
        details: {
          chatId: chat.id,
          chatType: chat.type,
          ...(ctx.callbackQuery
            ? { button: ctx.callbackQuery.data ?? "" }
            : { command: commandWordIn(commandText) ?? "(text)" }),
          ...(from.username ? { username: from.username } : {}),
        },
      });
      if (!ctx.callbackQuery)
        await kit.say(
          tx,
          now,
          chat.id,
          admin
            ? "Admin commands work in a private chat with me or in the admin group only."
            : `Sorry, this bot is for ${kit.deps.ispName ?? "the ISP"}'s staff only. This attempt was recorded.`,
        );
    });
    if (ctx.callbackQuery) await ctx.answerCallbackQuery({ text: "Not for you." });
  };
}
