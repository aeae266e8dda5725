import { Bot, type BotError, Composer, type Context } from "grammy";
import type { InlineKeyboardButton, UserFromGetMe } from "grammy/types";
import { findCustomerByAccountReference } from "../../billing/accounts.ts";
import { audit } from "../../billing/audit.ts";
import { type BillingContext, BillingError } from "../../billing/context.ts";
import { formatKes } from "../../billing/money.ts";
import { assignUnmatchedPayment, listUnmatchedPayments } from "../../billing/unmatched.ts";
import type { Db, Executor } from "../../db/client.ts";
import type { Logger } from "../../logger.ts";
import { formatDateTime } from "../../messaging/render.ts";
import {
  askConfirmation,
  confirmPattern,
  describe,
  type PendingAction,
  pressConfirmation,
} from "./confirmations.ts";
import { parseAccount, parseAmount, parseNote, parseRole, parseTelegramId, words } from "./parse.ts";
import {
  currentSubscription,
  findCustomers,
  paymentByReceipt,
  subscriberCard,
  unmatchedByReceipt,
} from "./queries.ts";
import { queueAdminCall, queueAdminReplies } from "./queued-api.ts";
import {
  type Admin,
  type AdminCommand,
  addAdminInTx,
  adminActor,
  findAdmin,
  listAdmins,
  may,
  PERMISSIONS,
  removeAdminInTx,
  strangerActor,
} from "./roles.ts";
import { cardText, findLine, USAGE } from "./texts.ts";

/**
 * The ISP's own Telegram bot: staff look subscribers up, record cash, suspend and resume, and place
 * unmatched payments from a private chat or a configured admin group. Only admins (table `admins`)
 * are served; anyone else is refused and the attempt audited. Every mutating command runs one
 * billing use-case in one transaction with its audit rows and the answer's outbox row; destructive
 * ones ask first with a button that works once (confirmations.ts). Answers go out through the
 * outbox on channel `telegram_admin`, sent by a chat worker of their own.
 */

export interface AdminBotDeps {
  token: string;
  ctx: BillingContext;
  logger: Logger;
  /** Group or supergroup chat ids where admins may use the bot (`TELEGRAM_ADMIN_CHATS`); private chats always. */
  adminChatIds?: readonly number[];
  /** The owner from configuration: the chat will not remove them. */
  ownerTelegramId?: number;
  /** Shown in the refusal. */
  ispName?: string;
  apiRoot?: string;
  botInfo?: UserFromGetMe;
  /** Told after messages were queued for the admin chat worker. */
  onQueued?: () => void;
}

const CARD_BUTTON = /^(sus|res|pay):(#?[A-Za-z0-9-]{2,32})$/;

export function createAdminBot(deps: AdminBotDeps): Bot {
  const { ctx: billing } = deps;
  const db = billing.db;
  const clock = billing.clock;
  const timezone = billing.settings.timezone;
  const adminChats = new Set(deps.adminChatIds ?? []);
  const log = deps.logger.child({ module: "telegram-admin" });
  const bot = new Bot(deps.token, {
    ...(deps.botInfo ? { botInfo: deps.botInfo } : {}),
    client: {
      ...(deps.apiRoot ? { apiRoot: deps.apiRoot } : {}),
      canUseWebhookReply: (method) => method === "answerCallbackQuery",
    },
  });
  bot.api.config.use(queueAdminReplies({ db, clock, onQueued: deps.onQueued }));

  /** The admin behind each update the gate let through. */
  const callers = new WeakMap<Context, Admin>();
  const adminOf = (ctx: Context): Admin => {
    const admin = callers.get(ctx);
    if (!admin) throw new Error("an admin handler ran without the gate");
    return admin;
  };

  /** One transaction: the caller's writes and the answers it queues (sent once it committed). */
  async function inTx<T>(work: (tx: Executor, inTxCtx: BillingContext, now: Date) => Promise<T>): Promise<T> {
    const result = await db.transaction((tx) =>
      work(tx, { ...billing, db: tx as unknown as Db }, clock.now()),
    );
    deps.onQueued?.();
    return result;
  }
  const say = (tx: Executor, now: Date, chatId: number, text: string, buttons?: InlineKeyboardButton[][]) =>
    queueAdminCall(tx, now, "sendMessage", {
      chat_id: chatId,
      text: text.slice(0, 4096),
      ...(buttons?.length ? { reply_markup: { inline_keyboard: buttons } } : {}),
    });

  const commandWord = (ctx: Context) =>
    /^\/([A-Za-z0-9_]+)/.exec(ctx.message?.text ?? "")?.[1]?.toLowerCase() ?? null;

  // ---- The gate: admins only, in private chats or the configured admin chats -------------------
  bot.use(async (ctx, next) => {
    const from = ctx.from;
    const chat = ctx.chat;
    if (!from || !chat || from.is_bot) return;
    if (!ctx.message && !ctx.callbackQuery) return;
    const isCommand = ctx.message?.entities?.some((e) => e.type === "bot_command" && e.offset === 0) ?? false;
    // Talk in a group that is not a command to this bot is none of its business.
    if (!ctx.callbackQuery && chat.type !== "private") {
      if (!isCommand) return;
      const addressee = /^\/[A-Za-z0-9_]+@(\w+)/.exec(ctx.message?.text ?? "")?.[1];
      if (addressee && addressee.toLowerCase() !== ctx.me.username.toLowerCase()) return;
    }
    const adminChat = chat.type === "private" || adminChats.has(chat.id);
    const admin = await findAdmin(db, from.id);
    if (admin && adminChat) {
      callers.set(ctx, admin);
      await next();
      return;
    }
    const reason = admin ? "not an admin chat" : "not an admin";
    await inTx(async (tx, _, now) => {
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
            : { command: commandWord(ctx) ?? "(text)" }),
          ...(from.username ? { username: from.username } : {}),
        },
      });
      if (!ctx.callbackQuery)
        await say(
          tx,
          now,
          chat.id,
          admin
            ? "Admin commands work in a private chat with me or in the admin group only."
            : `Sorry, this bot is for ${deps.ispName ?? "the ISP"}'s staff only. This attempt was recorded.`,
        );
    });
    if (ctx.callbackQuery) await ctx.answerCallbackQuery({ text: "Not for you." });
  });

  /** Refuses a command the caller's role does not allow, audited with the caller's id. */
  async function refuseRole(ctx: Context, admin: Admin, command: AdminCommand): Promise<void> {
    await inTx(async (tx, _, now) => {
      await audit(tx, adminActor(admin.telegramId), now, {
        action: "admin.refused",
        entity: "admin_command",
        entityId: command,
        reason: `role ${admin.role}`,
        details: { chatId: ctx.chat?.id ?? null },
      });
      if (!ctx.callbackQuery)
        await say(
          tx,
          now,
          ctx.chat!.id,
          `Your role (${admin.role}) may not use /${command}. Ask an owner. /help lists what you may do.`,
        );
    });
  }

  /** A command handler behind its permission: `args` are the words after the command. */
  function command(
    composer: Composer<Context>,
    name: AdminCommand,
    handle: (ctx: Context, admin: Admin, args: string[]) => Promise<void>,
  ) {
    composer.command(name, async (ctx) => {
      const admin = adminOf(ctx);
      if (!may(admin.role, name)) return refuseRole(ctx, admin, name);
      await handle(ctx, admin, words(typeof ctx.match === "string" ? ctx.match : ""));
    });
  }

  const reply = (ctx: Context, text: string) => ctx.reply(text.slice(0, 4096));
  const usage = (name: AdminCommand, problem?: string) =>
    `${problem ? `${problem}\n` : ""}Usage: ${USAGE[name]}`;

  // ---- /help ----------------------------------------------------------------------------------
  const help = new Composer<Context>();
  command(help, "help", async (ctx, admin) => {
    const mine = (Object.keys(PERMISSIONS) as AdminCommand[]).filter((c) => may(admin.role, c));
    await reply(
      ctx,
      [
        `You are ${admin.role}${admin.name ? ` (${admin.name})` : ""}. You may use:`,
        ...mine.map((c) => USAGE[c]),
      ].join("\n"),
    );
  });
  help.command("start", async (ctx) => {
    const admin = adminOf(ctx);
    await reply(ctx, `Hello ${admin.name || "admin"} (${admin.role}). Type /help for what you may do.`);
  });

  // ---- /admins, /admin_add, /admin_remove -----------------------------------------------------
  const team = new Composer<Context>();
  command(team, "admins", async (ctx) => {
    const rows = await listAdmins(db);
    await reply(
      ctx,
      ["Admins:", ...rows.map((a) => `  • ${a.telegramId} ${a.role}${a.name ? ` — ${a.name}` : ""}`)].join(
        "\n",
      ),
    );
  });
  command(team, "admin_add", async (ctx, admin, args) => {
    const id = parseTelegramId(args[0]);
    if (!id.ok) return void (await reply(ctx, usage("admin_add", id.error)));
    const role = parseRole(args[1]);
    if (!role.ok) return void (await reply(ctx, usage("admin_add", role.error)));
    const name = parseNote(args.slice(2), 64);
    if (!name.ok) return void (await reply(ctx, usage("admin_add", name.error)));
    await answerBilling(ctx, async (tx, _, now) => {
      const done = await addAdminInTx(
        tx,
        now,
        admin,
        {
          telegramId: id.value,
          role: role.value,
          name: name.value,
        },
        deps.ownerTelegramId,
      );
      const text =
        done === "added"
          ? `Added ${id.value} as ${role.value}${name.value ? ` (${name.value})` : ""}. They can now open a chat with me and type /help.`
          : done === "changed"
            ? `${id.value} is now ${role.value}.`
            : `${id.value} already is ${role.value}.`;
      await say(tx, now, ctx.chat!.id, text);
    });
  });
  command(team, "admin_remove", async (ctx, admin, args) => {
    const id = parseTelegramId(args[0]);
    if (!id.ok) return void (await reply(ctx, usage("admin_remove", id.error)));
    await answerBilling(ctx, async (tx, _, now) => {
      const removed = await removeAdminInTx(tx, now, admin, id.value, deps.ownerTelegramId);
      await say(
        tx,
        now,
        ctx.chat!.id,
        `Removed ${removed.telegramId} (${removed.role}${removed.name ? `, ${removed.name}` : ""}).`,
      );
    });
  });

  /** Runs a mutating command in one transaction; a refusal by the core is told as it is. */
  async function answerBilling(
    ctx: Context,
    work: (tx: Executor, inTxCtx: BillingContext, now: Date) => Promise<void>,
  ) {
    try {
      await inTx(work);
    } catch (error) {
      if (!(error instanceof BillingError)) throw error;
      await reply(ctx, error.message);
    }
  }

  // ---- /find, /sub ----------------------------------------------------------------------------
  const lookup = new Composer<Context>();
  command(lookup, "find", async (ctx, _admin, args) => {
    const query = args.join(" ");
    if (query.length < 2)
      return void (await reply(
        ctx,
        usage("find", "Say a phone number, an account number or part of a name."),
      ));
    if (query.length > 64) return void (await reply(ctx, usage("find", "That is too long to be a name.")));
    const found = await findCustomers(db, query, clock.now());
    if (found.length === 0) return void (await reply(ctx, `Nobody matches "${query}".`));
    await reply(
      ctx,
      [
        `${found.length} match${found.length === 1 ? "" : "es"}:`,
        ...found.map((s) => findLine(s, timezone)),
      ].join("\n"),
    );
  });
  command(lookup, "sub", async (ctx, admin, args) => {
    const account = parseAccount(args[0]);
    if (!account.ok) return void (await reply(ctx, usage("sub", account.error)));
    const customer = await findCustomerByAccountReference(db, account.value);
    if (!customer) return void (await reply(ctx, `No account ${account.value}. Try /find.`));
    const card = await subscriberCard(db, customer.id, clock.now());
    const status = card.summary.subscription?.status;
    const buttons: InlineKeyboardButton[] = [];
    const acct = customer.accountNumber;
    if ((status === "active" || status === "pending") && may(admin.role, "suspend"))
      buttons.push({ text: "Suspend", callback_data: `sus:${acct}` });
    if (status === "suspended" && may(admin.role, "resume"))
      buttons.push({ text: "Resume", callback_data: `res:${acct}` });
    if (may(admin.role, "pay")) buttons.push({ text: "Record payment", callback_data: `pay:${acct}` });
    await ctx.reply(
      cardText(card, timezone),
      buttons.length ? { reply_markup: { inline_keyboard: [buttons] } } : {},
    );
  });

  // ---- /pay, /suspend, /resume: asked first ----------------------------------------------------
  const service = new Composer<Context>();
  command(service, "pay", async (ctx, admin, args) => {
    const account = parseAccount(args[0]);
    if (!account.ok) return void (await reply(ctx, usage("pay", account.error)));
    const amount = parseAmount(args[1]);
    if (!amount.ok) return void (await reply(ctx, usage("pay", amount.error)));
    const note = parseNote(args.slice(2));
    if (!note.ok) return void (await reply(ctx, usage("pay", note.error)));
    const customer = await findCustomerByAccountReference(db, account.value);
    if (!customer) return void (await reply(ctx, `No account ${account.value}. Try /find.`));
    const action: PendingAction = {
      kind: "pay",
      customerId: customer.id,
      accountNumber: customer.accountNumber,
      amountCents: amount.value,
      note: note.value,
    };
    await inTx((tx, _, now) =>
      askConfirmation(tx, now, admin, ctx.chat!.id, action, `${customer.name}: ${describe(action)}?`),
    );
  });

  /** `/suspend` and `/resume`, typed or pressed on a card. */
  async function askService(ctx: Context, admin: Admin, kind: "suspend" | "resume", args: string[]) {
    const account = parseAccount(args[0]);
    if (!account.ok) return void (await reply(ctx, usage(kind, account.error)));
    const reason = parseNote(args.slice(1));
    if (!reason.ok) return void (await reply(ctx, usage(kind, reason.error)));
    const customer = await findCustomerByAccountReference(db, account.value);
    if (!customer) return void (await reply(ctx, `No account ${account.value}. Try /find.`));
    const subscription = await currentSubscription(db, customer.id);
    if (!subscription)
      return void (await reply(ctx, `${customer.accountNumber} has no subscription to ${kind}.`));
    if (kind === "suspend" && subscription.status === "suspended" && subscription.suspendedReason === "admin")
      return void (await reply(ctx, `${customer.accountNumber} is already suspended by an admin.`));
    if (kind === "resume" && subscription.status !== "suspended")
      return void (await reply(
        ctx,
        `${customer.accountNumber} is not suspended (it is ${subscription.status}).`,
      ));
    const action: PendingAction = {
      kind,
      subscriptionId: subscription.id,
      customerId: customer.id,
      accountNumber: customer.accountNumber,
      reason: reason.value || `${kind === "suspend" ? "suspended" : "resumed"} from the admin chat`,
    };
    await inTx((tx, _, now) =>
      askConfirmation(tx, now, admin, ctx.chat!.id, action, `${customer.name}: ${describe(action)}?`),
    );
  }
  command(service, "suspend", (ctx, admin, args) => askService(ctx, admin, "suspend", args));
  command(service, "resume", (ctx, admin, args) => askService(ctx, admin, "resume", args));

  // ---- /unmatched, /assign --------------------------------------------------------------------
  const unmatched = new Composer<Context>();
  command(unmatched, "unmatched", async (ctx) => {
    const rows = await listUnmatchedPayments(db);
    if (rows.length === 0) return void (await reply(ctx, "No unmatched payments."));
    const shown = rows
      .slice(0, 30)
      .map(
        (p) =>
          `  • ${p.providerRef} ${formatKes(p.amountCents)} ${formatDateTime("en", p.receivedAt, timezone)}${p.accountReference ? ` ref "${p.accountReference}"` : ""}${p.payerName ? ` from ${p.payerName}` : ""}${p.holdReason ? ` — ${p.holdReason}` : ""}`,
      );
    await reply(
      ctx,
      [
        `${rows.length} unmatched payment${rows.length === 1 ? "" : "s"}:`,
        ...shown,
        ...(rows.length > 30 ? [`…and ${rows.length - 30} more.`] : []),
        "Place one with /assign <receipt> <account>.",
      ].join("\n"),
    );
  });
  command(unmatched, "assign", async (ctx, admin, args) => {
    const receipt = args[0];
    if (!receipt || !/^[A-Za-z0-9_-]{4,40}$/.test(receipt))
      return void (await reply(
        ctx,
        usage(
          "assign",
          receipt ? `"${receipt}" is not a receipt number.` : "Say the receipt number and the account.",
        ),
      ));
    const account = parseAccount(args[1]);
    if (!account.ok) return void (await reply(ctx, usage("assign", account.error)));
    if (args.length > 2) return void (await reply(ctx, usage("assign", "Too many words.")));
    const waiting = await unmatchedByReceipt(db, receipt);
    if (waiting.length === 0) {
      const known = await paymentByReceipt(db, receipt);
      return void (await reply(
        ctx,
        known
          ? `${receipt} is not waiting to be assigned (already credited).`
          : `No payment with receipt ${receipt}. /unmatched lists them.`,
      ));
    }
    if (waiting.length > 1)
      return void (await reply(ctx, `More than one payment has receipt ${receipt}: place it from the CLI.`));
    const payment = waiting[0]!;
    await answerBilling(ctx, async (tx, inTxCtx, now) => {
      const result = await assignUnmatchedPayment(inTxCtx, adminActor(admin.telegramId), {
        paymentId: payment.id,
        accountNumber: account.value,
      });
      const restored = result.restoredSubscriptionIds.length > 0 ? " Service restored." : "";
      await say(
        tx,
        now,
        ctx.chat!.id,
        `✅ ${payment.providerRef} (${formatKes(payment.amountCents)}) credited to ${account.value.toUpperCase()}. Balance now ${formatKes(result.balanceCents)}.${restored}`,
      );
    });
  });

  // ---- Buttons --------------------------------------------------------------------------------
  const buttons = new Composer<Context>();
  buttons.callbackQuery(confirmPattern, async (ctx) => {
    const admin = adminOf(ctx);
    const [, decision, token] = ctx.match as RegExpMatchArray;
    const message = ctx.callbackQuery.message;
    const outcome = await pressConfirmation(
      billing,
      admin,
      decision as "ok" | "no",
      token!,
      message ? { chatId: message.chat.id, messageId: message.message_id } : null,
    );
    if (outcome.kind === "nothing" && outcome.refusedRole) await refuseRole(ctx, admin, outcome.refusedRole);
    deps.onQueued?.();
    await ctx.answerCallbackQuery({ text: outcome.toast });
  });
  buttons.callbackQuery(CARD_BUTTON, async (ctx) => {
    const admin = adminOf(ctx);
    const [, what, account] = ctx.match as RegExpMatchArray;
    const needs: AdminCommand = what === "sus" ? "suspend" : what === "res" ? "resume" : "pay";
    if (!may(admin.role, needs)) {
      await refuseRole(ctx, admin, needs);
      await ctx.answerCallbackQuery({ text: `Your role (${admin.role}) may not do that.` });
      return;
    }
    if (what === "pay")
      await reply(ctx, `To record cash for ${account}, type:\n/pay ${account} <amount in shillings> [note]`);
    else await askService(ctx, admin, needs as "suspend" | "resume", [account!]);
    await ctx.answerCallbackQuery();
  });
  buttons.on("callback_query", (ctx) =>
    ctx.answerCallbackQuery({ text: "That button is no longer in use." }),
  );

  // ---- Anything else --------------------------------------------------------------------------
  const fallback = new Composer<Context>();
  fallback.on("message", async (ctx) => {
    const word = commandWord(ctx);
    await reply(ctx, word ? `Unknown command /${word}. Type /help.` : "Type /help for what you may do.");
  });

  const onError = async (error: BotError<Context>) => {
    log.error({ err: error.error, updateId: error.ctx.update.update_id }, "admin update failed");
    try {
      if (error.ctx.callbackQuery)
        await error.ctx.answerCallbackQuery({ text: "Something went wrong; nothing was changed." });
      else if (error.ctx.chat) await error.ctx.reply("Something went wrong; please try again.");
    } catch (apology) {
      log.warn({ err: apology }, "admin apology not sent");
    }
  };
  bot.errorBoundary(onError, help, team, lookup, service, unmatched, buttons, fallback);
  bot.catch((error) =>
    log.error({ err: error.error, updateId: error.ctx.update.update_id }, "admin update failed"),
  );
  return bot;
}
