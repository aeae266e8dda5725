import type { Composer, Context } from "grammy";
import type { InlineKeyboardButton, UserFromGetMe } from "grammy/types";
import { audit } from "../../billing/audit.ts";
import { type BillingContext, BillingError } from "../../billing/context.ts";
import type { Clock } from "../../clock.ts";
import type { Db, Executor } from "../../db/client.ts";
import type { SecretBox } from "../../lib/secret-box.ts";
import type { Logger } from "../../logger.ts";
import type { ActiveSession, SessionKind } from "../../network/active-sessions.ts";
import type { RouterReconcileReport } from "../../network/reconcile.ts";
import { askConfirmation, type PendingAction } from "./confirmations.ts";
import { commandWordIn, words } from "./parse.ts";
import { queueAdminCall } from "./queued-api.ts";
import { type Admin, type AdminCommand, adminActor, may } from "./roles.ts";
import { USAGE } from "./texts.ts";

/**
 * What every feature of the admin bot shares: the database, the clock, the ISP's time zone, the
 * caller the gate let through, one transaction per use-case (`inTx`), answers queued on the outbox
 * (`say`, `reply`) and commands behind their permission (`command`). Built once per bot by
 * `createAdminBot`; each feature (features/*.ts) is a `(kit) => Composer`.
 */

/** What the admin bot may ask of the network (src/network `Network`): nothing here talks to a router. */
export interface AdminNetwork {
  /** One router compared with the database and, unless a dry run, repaired (`Network.reconcileRouter`). */
  reconcileRouter(routerId: number, options?: { dryRun?: boolean }): Promise<RouterReconcileReport>;
  /** Wakes the provisioning worker (rows made due again). */
  kick?(): void;
  /** A subscriber's session on a router now, or null (`activeSessionOn`); throws when the router is unreachable. */
  activeSession?(routerId: number, kind: SessionKind, username: string): Promise<ActiveSession | null>;
  /** A router's address or login changed: its open connection is dropped, the next one uses the new. */
  routerChanged?(routerId: number): Promise<void>;
}

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
  /** For `/sync` and `/retry`; without it `/sync` answers that the network is not running here. */
  network?: AdminNetwork;
  /** Seals router passwords typed in the chat (`/router_add`, `/router_password`); without it they are refused. */
  box?: SecretBox;
  /** Countries whose phone numbers an imported file may hold (`SERVED_COUNTRIES`, as the CLI's import); default Kenya. */
  servedCountries?: readonly string[];
  /** `HOTSPOT_LOGIN_URL`: where a printed voucher's QR code logs in (voucher-sheet.ts). */
  hotspotLoginUrl?: string;
}

export type TxWork<T> = (tx: Executor, inTxCtx: BillingContext, now: Date) => Promise<T>;
export type CommandHandler = (ctx: Context, admin: Admin, args: string[]) => Promise<void>;
export type Feature = (kit: AdminKit) => Composer<Context>;

export interface AdminKit {
  deps: AdminBotDeps;
  billing: BillingContext;
  db: Db;
  clock: Clock;
  timezone: string;
  log: Logger;
  adminChats: ReadonlySet<number>;
  /** The admin behind an update the gate let through. */
  adminOf(ctx: Context): Admin;
  /** The gate's mark: `ctx` comes from `admin`. */
  admit(ctx: Context, admin: Admin): void;
  /** One transaction: the caller's writes and the answers it queues (sent once it committed). */
  inTx<T>(work: TxWork<T>): Promise<T>;
  /** Asks `admin` in this chat to confirm `action` (confirmations.ts), in a transaction of its own. */
  ask(ctx: Context, admin: Admin, action: PendingAction, question: string): Promise<void>;
  /** Runs a mutating command in one transaction; a refusal by the core is told as it is. */
  answerBilling(ctx: Context, work: TxWork<void>): Promise<void>;
  /** A message for `chatId`, queued in `tx`. */
  say(
    tx: Executor,
    now: Date,
    chatId: number,
    text: string,
    buttons?: InlineKeyboardButton[][],
  ): Promise<void>;
  /** A command handler behind its permission: `args` are the words after the command. */
  command(composer: Composer<Context>, name: AdminCommand, handle: CommandHandler): void;
  /** Refuses a command the caller's role does not allow, audited with the caller's id. */
  refuseRole(ctx: Context, admin: Admin, command: AdminCommand): Promise<void>;
  reply(ctx: Context, text: string): Promise<unknown>;
  /** Lines as one message, or several (split between lines) when longer than Telegram takes. */
  replyLines(ctx: Context, lines: readonly string[]): Promise<void>;
  usage(name: AdminCommand, problem?: string): string;
  /** The command typed (lower case, no slash), or null. */
  commandWord(ctx: Context): string | null;
  /**
   * Work started after the update was answered (a reconciliation): never awaited by the handler,
   * tracked so that tests and shutdown can wait for it (`adminBackgroundFinished`).
   */
  background(name: string, work: () => Promise<void>): void;
}

/** Background work under way, per database handle (as the job runner's guard). */
const backgroundHere = new WeakMap<Db, Set<Promise<void>>>();

/** Resolves when the admin bot's background work on `db` (a `/sync`) has ended: await before closing `db`. */
export async function adminBackgroundFinished(db: Db): Promise<void> {
  for (;;) {
    const running = [...(backgroundHere.get(db) ?? [])];
    if (running.length === 0) return;
    await Promise.allSettled(running);
  }
}

export function createAdminKit(deps: AdminBotDeps): AdminKit {
  const billing = deps.ctx;
  const db = billing.db;
  const clock = billing.clock;
  const log = deps.logger.child({ module: "telegram-admin" });
  const callers = new WeakMap<Context, Admin>();

  const kit: AdminKit = {
    deps,
    billing,
    db,
    clock,
    timezone: billing.settings.timezone,
    log,
    adminChats: new Set(deps.adminChatIds ?? []),
    adminOf(ctx) {
      const admin = callers.get(ctx);
      if (!admin) throw new Error("an admin handler ran without the gate");
      return admin;
    },
    admit(ctx, admin) {
      callers.set(ctx, admin);
    },
    async inTx(work) {
      const result = await db.transaction((tx) =>
        work(tx, { ...billing, db: tx as unknown as Db }, clock.now()),
      );
      deps.onQueued?.();
      return result;
    },
    async ask(ctx, admin, action, question) {
      await kit.inTx((tx, _, now) => askConfirmation(tx, now, admin, ctx.chat!.id, action, question));
    },
    async answerBilling(ctx, work) {
      try {
        await kit.inTx(work);
      } catch (error) {
        if (!(error instanceof BillingError)) throw error;
        await kit.reply(ctx, error.message);
      }
    },
    say: (tx, now, chatId, text, buttons) =>
      queueAdminCall(tx, now, "sendMessage", {
        chat_id: chatId,
        text: text.slice(0, 4096),
        ...(buttons?.length ? { reply_markup: { inline_keyboard: buttons } } : {}),
      }),
    command(composer, name, handle) {
      composer.command(name, async (ctx) => {
        const admin = kit.adminOf(ctx);
        if (!may(admin.role, name)) return kit.refuseRole(ctx, admin, name);
        await handle(ctx, admin, words(typeof ctx.match === "string" ? ctx.match : ""));
      });
    },
    async refuseRole(ctx, admin, command) {
      await kit.inTx(async (tx, _, now) => {
        await audit(tx, adminActor(admin.telegramId), now, {
          action: "admin.refused",
          entity: "admin_command",
          entityId: command,
          reason: `role ${admin.role}`,
          details: { chatId: ctx.chat?.id ?? null },
        });
        if (!ctx.callbackQuery)
          await kit.say(
            tx,
            now,
            ctx.chat!.id,
            `Your role (${admin.role}) may not use /${command}. Ask an owner. /help lists what you may do.`,
          );
      });
    },
    reply: (ctx, text) => ctx.reply(text.slice(0, 4096)),
    async replyLines(ctx, lines) {
      for (const text of splitMessage(lines)) await ctx.reply(text);
    },
    usage: (name, problem) => `${problem ? `${problem}\n` : ""}Usage: ${USAGE[name]}`,
    commandWord: (ctx) => commandWordIn(ctx.message?.text ?? ""),
    background(name, work) {
      let running = backgroundHere.get(db);
      if (!running) {
        running = new Set();
        backgroundHere.set(db, running);
      }
      const task: Promise<void> = Promise.resolve()
        .then(work)
        .catch((error: unknown) => log.error({ err: error, task: name }, "admin background work failed"))
        .finally(() => running.delete(task));
      running.add(task);
    },
  };
  return kit;
}

/** Telegram's limit for one message's text. */
export const MESSAGE_LIMIT = 4096;

/** Lines packed into as few messages as fit, never splitting a line (one too long is cut). */
export function splitMessage(lines: readonly string[], limit = MESSAGE_LIMIT): string[] {
  const out: string[] = [];
  let current = "";
  for (const raw of lines) {
    const line = raw.slice(0, limit);
    if (current && current.length + 1 + line.length > limit) {
      out.push(current);
      current = line;
    } else current = current ? `${current}\n${line}` : line;
  }
  if (current) out.push(current);
  return out;
}
