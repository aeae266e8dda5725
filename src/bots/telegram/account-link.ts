import { and, eq, sql } from "drizzle-orm";
import { Composer, type Context, InlineKeyboard } from "grammy";
import { forgetChatOwner, linkChat } from "../../billing/chat-links.ts";
import type { Clock } from "../../clock.ts";
import { type Db, queryRows } from "../../db/client.ts";
import { parseRowId } from "../../db/params.ts";
import { chatLinks, customers, type Language } from "../../db/schema/index.ts";
import { checkPhone } from "../../lib/phone.ts";
import type { ChatInput } from "../chat-menu.ts";
import { checkLinkCode, isLinkCode, type LinkCodeRequest, requestLinkCode } from "./link-code.ts";
import { type BotText, botText } from "./texts.ts";
import { rememberVisitorPhone } from "./visitor-phone.ts";

/**
 * Who a Telegram chat is: linking to an account (own contact, or account number + SMS code),
 * unlinking, and a visitor's own phone for M-Pesa. The menu itself is in bot.ts.
 */

export const CHANNEL = "telegram";
/**
 * `u:<chat_links.id>:<customer id>`: the button unlinks that link to that customer only, so an old
 * one cannot undo a newer link (a chat linked to another account keeps its link row, and its id).
 */
const unlinkPattern = /^u:(\d{1,10}):(\d{1,10})$/;
/** `u:<chat_links.id>`, as buttons shown before they named the customer: asked again, never acted on. */
const oldUnlinkPattern = /^u:\d{1,10}$/;

export interface AccountLinkDeps {
  db: Db;
  clock: Clock;
  servedCountries?: readonly string[];
}

type Show = (ctx: Context, input: ChatInput) => Promise<void>;

/** The language to answer a Telegram chat in: its customer's, else the one its menu session chose. */
async function chatLanguage(db: Db, userId: number | undefined): Promise<Language> {
  if (userId === undefined) return "en";
  const chatId = String(userId);
  const [row] = await queryRows<{ language: Language | null }>(
    db,
    sql`select coalesce(
          (select c.language from chat_links l join customers c on c.id = l.customer_id
            where l.channel = ${CHANNEL} and l.chat_id = ${chatId}),
          (select s.language from chat_sessions s where s.channel = ${CHANNEL} and s.chat_id = ${chatId})
        ) as language`,
  );
  return row?.language ?? "en";
}
const noKeyboard = { reply_markup: { remove_keyboard: true } } as const;
const refusalText: Record<Exclude<LinkCodeRequest["kind"], "sent">, BotText> = {
  unknown: "linkUnknown",
  wait: "linkWait",
  chatLimit: "linkChatLimit",
  accountLimit: "linkAccountLimit",
};

export function accountLinking(deps: AccountLinkDeps, show: Show) {
  const feature = new Composer<Context>();
  const languageOf = (ctx: Context) => chatLanguage(deps.db, ctx.from?.id);

  feature.command("link", async (ctx) => {
    const account = ctx.match.trim();
    const language = await languageOf(ctx);
    if (!ctx.from || account === "") {
      await ctx.reply(botText(language, "linkUsage"));
      return;
    }
    const sent = await requestLinkCode(deps.db, {
      channel: CHANNEL,
      chatId: String(ctx.from.id),
      account,
      now: deps.clock.now(),
    });
    if (sent.kind === "sent")
      await ctx.reply(
        botText(language, "linkSent", { account: sent.accountNumber, ending: sent.phoneEnding }),
      );
    else await ctx.reply(botText(language, refusalText[sent.kind]));
  });

  // Six digits while a code is pending are an attempt; otherwise they are left to the menu.
  feature.on("message:text", async (ctx, next) => {
    if (!isLinkCode(ctx.message.text)) return next();
    const result = await checkLinkCode(deps.db, {
      channel: CHANNEL,
      chatId: String(ctx.from.id),
      code: ctx.message.text,
      now: deps.clock.now(),
    });
    if (result.kind === "none") return next();
    const language = await languageOf(ctx);
    switch (result.kind) {
      case "wrong":
        await ctx.reply(
          result.attemptsLeft === 1
            ? botText(language, "codeWrongLast")
            : botText(language, "codeWrong", { left: String(result.attemptsLeft) }),
        );
        return;
      case "expired":
        await ctx.reply(botText(language, "codeExpired"));
        return;
      case "exhausted":
        await ctx.reply(botText(language, "codeExhausted"));
        return;
      case "linked":
        await ctx.reply(botText(result.language, "linked", { account: result.accountNumber }));
        await show(ctx, { kind: "text", text: "menu" });
    }
  });

  async function askUnlink(ctx: Context): Promise<void> {
    if (!ctx.from) return;
    const [link] = await deps.db
      .select({ id: chatLinks.id, customerId: chatLinks.customerId, accountNumber: customers.accountNumber })
      .from(chatLinks)
      .innerJoin(customers, eq(customers.id, chatLinks.customerId))
      .where(and(eq(chatLinks.channel, CHANNEL), eq(chatLinks.chatId, String(ctx.from.id))));
    const language = await languageOf(ctx);
    if (!link) {
      await ctx.reply(botText(language, "notLinked"));
      return;
    }
    await ctx.reply(botText(language, "unlinkAsk", { account: link.accountNumber }), {
      reply_markup: new InlineKeyboard().text(
        botText(language, "unlinkButton"),
        `u:${link.id}:${link.customerId}`,
      ),
    });
  }

  feature.command("unlink", askUnlink);

  // It cannot tell which account it was for: the question is asked again, about the link of now.
  feature.callbackQuery(oldUnlinkPattern, async (ctx) => {
    await ctx.answerCallbackQuery();
    if (ctx.callbackQuery.message?.chat.id === ctx.from.id) await askUnlink(ctx);
  });

  feature.callbackQuery(unlinkPattern, async (ctx) => {
    const message = ctx.callbackQuery.message;
    // Read before the link goes: the customer's language is the one they were answered in.
    const language = await languageOf(ctx);
    if (!message || message.chat.id !== ctx.from.id) {
      await ctx.answerCallbackQuery({ text: botText(language, "foreign") });
      return;
    }
    // The delete is the once: a second press (or a copy of this update) finds nothing to remove.
    const linkId = parseRowId(ctx.match[1]!);
    const customerId = parseRowId(ctx.match[2]!);
    const chatId = String(ctx.from.id);
    const gone =
      linkId === null || customerId === null
        ? undefined
        : await deps.db.transaction(async (tx) => {
            const [link] = await tx
              .delete(chatLinks)
              .where(
                and(
                  eq(chatLinks.id, linkId),
                  eq(chatLinks.customerId, customerId),
                  eq(chatLinks.channel, CHANNEL),
                  eq(chatLinks.chatId, chatId),
                ),
              )
              .returning({ customerId: chatLinks.customerId });
            if (link) await forgetChatOwner(tx, { channel: CHANNEL, chatId, customerId: link.customerId });
            return link;
          });
    if (!gone) {
      await ctx.answerCallbackQuery({ text: botText(language, "unlinkGone") });
      return;
    }
    const [customer] = await deps.db
      .select({ accountNumber: customers.accountNumber })
      .from(customers)
      .where(eq(customers.id, gone.customerId));
    await ctx.answerCallbackQuery();
    await ctx.api.editMessageText(
      message.chat.id,
      message.message_id,
      botText(language, "unlinked", { account: customer?.accountNumber ?? "" }),
    );
  });

  feature.on("message:contact", async (ctx) => {
    const contact = ctx.message.contact;
    const language = await languageOf(ctx);
    // Anyone can forward anyone's contact card: only the sender's own number proves who they are.
    if (contact.user_id !== ctx.from.id) {
      await ctx.reply(botText(language, "notYours"));
      return;
    }
    const verdict = checkPhone(contact.phone_number, deps.servedCountries);
    if (verdict.kind !== "served") {
      await ctx.reply(botText(language, "phoneNotServed"), noKeyboard);
      return;
    }
    const [customer] = await deps.db
      .select({ id: customers.id, accountNumber: customers.accountNumber, language: customers.language })
      .from(customers)
      .where(eq(customers.phone, verdict.e164));
    if (!customer) {
      // A visitor: the number is theirs, so M-Pesa may ask it to pay, e.g. for the voucher they were buying.
      await rememberVisitorPhone(deps.db, CHANNEL, String(ctx.from.id), verdict.e164, deps.clock.now());
      await ctx.reply(botText(language, "noAccount"), noKeyboard);
      await show(ctx, { kind: "refresh" });
      return;
    }
    const chatId = String(ctx.from.id);
    const linked = await deps.db.transaction((tx) =>
      linkChat(tx, {
        channel: CHANNEL,
        chatId,
        customerId: customer.id,
        method: "contact",
        at: deps.clock.now(),
        phone: verdict.e164,
      }),
    );
    // The account moved to another number a moment ago: this one is no longer its.
    if (!linked) {
      await ctx.reply(botText(language, "noAccount"), noKeyboard);
      await show(ctx, { kind: "refresh" });
      return;
    }
    await ctx.reply(botText(customer.language, "linked", { account: customer.accountNumber }), noKeyboard);
    await show(ctx, { kind: "text", text: "menu" });
  });

  return feature;
}
