import { isIP } from "node:net";
import { and, eq, gt, sql } from "drizzle-orm";
import { Composer, type Context } from "grammy";
import { audit } from "../../../billing/audit.ts";
import { BillingError } from "../../../billing/context.ts";
import type { Executor } from "../../../db/client.ts";
import { adminDialogs, chatInbox, routers } from "../../../db/schema/index.ts";
import { addRouterAudited } from "../../../network/routers.ts";
import { enqueueChat } from "../../chat-outbox.ts";
import { inboxIdOf } from "../../telegram/update-marks.ts";
import { askConfirmation, confirmable, type FeatureAction } from "../confirmations.ts";
import type { AdminKit } from "../kit.ts";
import { ADMIN_CHANNEL } from "../queued-api.ts";
import { type Admin, type AdminCommand, adminActor, PERMISSIONS } from "../roles.ts";

/**
 * Routers from the chat. `/router_add` is guided (name → host → port → TLS → username), then the
 * once-only confirmation, and only then the password: "send it now", and the message holding it is
 * acted on at once — the router added with the password sealed (SecretBox), an audit row, the
 * answer, and a `deleteMessage` for that very message, all in one transaction. `/router_password
 * <name>` asks for a new password the same way. The password is never written to `admin_dialogs`
 * (the dialog holds the other answers only), never echoed, never audited; the webhook's stored copy
 * of the update (`chat_inbox`) has its text replaced in the same transaction. `/router_edit <name>
 * <host|port|user|tls> <value>` changes one field, audited.
 *
 * The dialog lives in `admin_dialogs` (kind `router`), as `/add`'s does (features/add.ts): one per
 * admin and chat, forgotten after 10 minutes; another command or `/cancel_dialog` abandons it. This
 * feature comes before `/add`'s in the bot, so that at the password step a text that merely starts
 * with a slash (a password may) is still taken as the password, while a real command abandons it.
 */

export const ROUTER_DIALOG_TTL_MS = 10 * 60_000;
const KIND = "router";
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$/;
const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const USERNAME = /^\S{1,64}$/;
const MAX_PASSWORD = 256;
/** What replaces a password in the stored copy of the update. */
const REMOVED = "(password removed)";

type Step = "name" | "host" | "port" | "tls" | "username" | "password";

interface Answers {
  /** `add`: a new router; `password`: a new password for `routerId`. */
  mode?: "add" | "password";
  name?: string;
  host?: string;
  /** null: the default for the TLS choice (8728, or 8729 with TLS). */
  port?: number | null;
  tls?: boolean;
  username?: string;
  routerId?: number;
}

type RouterAddAction = FeatureAction & {
  feature: "router_add";
  chatId: number;
  name: string;
  host: string;
  port: number;
  tls: boolean;
  username: string;
};

export const defaultPort = (tls: boolean) => (tls ? 8729 : 8728);

/** Every command the admin bot knows, and `/cancel_dialog`: these abandon a dialog at any step. */
const KNOWN_COMMANDS = new Set<string>([...Object.keys(PERMISSIONS), "cancel_dialog"]);

export function parseRouterName(text: string): string | null {
  const name = text.trim();
  return NAME.test(name) && !/^\d+$/.test(name) ? name : null;
}

export function parseHost(text: string): string | null {
  const host = text.trim();
  if (isIP(host)) return host;
  return HOSTNAME.test(host) ? host.toLowerCase() : null;
}

export function parsePort(text: string): number | null {
  const port = text.trim();
  if (!/^\d{1,5}$/.test(port)) return null;
  const n = Number(port);
  return n >= 1 && n <= 65_535 ? n : null;
}

export function parseYesNo(text: string): boolean | null {
  const t = text.trim().toLowerCase();
  if (["yes", "y", "tls", "true", "on", "ssl"].includes(t)) return true;
  if (["no", "n", "false", "off", "plain"].includes(t)) return false;
  return null;
}

async function routerNamed(db: Executor, name: string) {
  const [row] = await db
    .select()
    .from(routers)
    .where(sql`lower(${routers.name}) = ${name.trim().toLowerCase()}`)
    .limit(1);
  return row ?? null;
}

const describeRouter = (a: { name: string; host: string; port: number; tls: boolean; username: string }) =>
  `${a.name} at ${a.host}:${a.port}${a.tls ? " (API-SSL)" : ""}, user ${a.username}`;

/** Upserts the dialog's row (never a password in it). */
async function saveDialog(
  tx: Executor,
  now: Date,
  admin: number,
  chatId: number,
  step: Step,
  answers: Answers,
): Promise<void> {
  const row = {
    adminTelegramId: admin,
    chatId: String(chatId),
    kind: KIND,
    step,
    answers: answers as Record<string, unknown>,
    updatedAt: now,
    expiresAt: new Date(now.getTime() + ROUTER_DIALOG_TTL_MS),
  };
  await tx
    .insert(adminDialogs)
    .values(row)
    .onConflictDoUpdate({ target: [adminDialogs.adminTelegramId, adminDialogs.chatId], set: row });
}

const passwordQuestion = (a: { name: string; username: string }, isNew: boolean) =>
  `Send the ${isNew ? "" : "new "}password of ${a.username} on ${a.name} now, as a message of its own; the message will be deleted once read. (/cancel_dialog stops.)`;

confirmable("router_add", {
  command: "router_add",
  describe: (a) => `add router ${describeRouter(a as RouterAddAction)}`,
  /** Confirmed: the dialog moves on to the password (nothing is added before it arrives). */
  async run(ctx, admin, a) {
    const action = a as RouterAddAction;
    const now = ctx.clock.now();
    if (await routerNamed(ctx.db, action.name))
      throw new BillingError("router_exists", `A router named ${action.name} exists already.`);
    await saveDialog(ctx.db, now, admin.telegramId, action.chatId, "password", {
      mode: "add",
      name: action.name,
      host: action.host,
      port: action.port,
      tls: action.tls,
      username: action.username,
    });
    await enqueueChat(ctx.db, now, [
      {
        channel: ADMIN_CHANNEL,
        to: String(action.chatId),
        language: "en",
        content: {
          kind: "raw",
          method: "sendMessage",
          payload: { chat_id: action.chatId, text: passwordQuestion(action, true) },
        },
      },
    ]);
    return `Router ${describeRouter(action)}: confirmed, waiting for its password.`;
  },
});

export function routerDialogFeature(kit: AdminKit): Composer<Context> {
  const { db } = kit;
  const composer = new Composer<Context>();
  const keyOf = (ctx: Context) => ({ admin: kit.adminOf(ctx).telegramId, chat: String(ctx.chat!.id) });
  const where = (key: { admin: number; chat: string }) =>
    and(eq(adminDialogs.adminTelegramId, key.admin), eq(adminDialogs.chatId, key.chat));

  async function dialogOf(ctx: Context) {
    const [row] = await db
      .select()
      .from(adminDialogs)
      .where(
        and(where(keyOf(ctx)), gt(adminDialogs.expiresAt, kit.clock.now()), eq(adminDialogs.kind, KIND)),
      );
    return row ?? null;
  }

  async function ask(ctx: Context, step: Step, answers: Answers, question: string) {
    await kit.inTx(async (tx, _, now) => {
      await saveDialog(tx, now, kit.adminOf(ctx).telegramId, ctx.chat!.id, step, answers);
      await kit.say(tx, now, ctx.chat!.id, question);
    });
  }

  /** The password is typed in a private chat only: in a group the bot would not even hear it. */
  async function privateOnly(ctx: Context, command: AdminCommand): Promise<boolean> {
    if (ctx.chat?.type === "private") return true;
    await kit.reply(ctx, `/${command} asks for a password: use it in a private chat with me.`);
    return false;
  }

  async function boxHere(ctx: Context): Promise<boolean> {
    if (kit.deps.box) return true;
    await kit.reply(
      ctx,
      "Router passwords cannot be sealed in this instance (no secret key given to the admin bot): use the CLI (npm run cli -- routers add).",
    );
    return false;
  }

  // Text answers the router dialog; a known command (or /cancel_dialog) goes on to the others,
  // which abandon it (features/add.ts).
  composer.on("message", async (ctx, next) => {
    const text = ctx.message.text;
    if (text === undefined) return next();
    const word = kit.commandWord(ctx);
    if (word !== null && KNOWN_COMMANDS.has(word)) return next();
    const dialog = await dialogOf(ctx);
    if (!dialog) return next();
    const step = dialog.step as Step;
    const answers = dialog.answers as Answers;
    if (step === "password") return takePassword(ctx, kit.adminOf(ctx), answers, text);
    if (word !== null) return next();
    await answer(ctx, kit.adminOf(ctx), step, answers, text.trim());
  });

  kit.command(composer, "router_add", async (ctx) => {
    if (!(await privateOnly(ctx, "router_add")) || !(await boxHere(ctx))) return;
    await ask(
      ctx,
      "name",
      { mode: "add" },
      "New router (1/5): its name in Tandao? e.g. kibera-1 (letters, digits, . _ -; /cancel_dialog stops; forgotten after 10 minutes.)",
    );
  });

  kit.command(composer, "router_password", async (ctx, _admin, args) => {
    if (args.length !== 1)
      return void (await kit.reply(ctx, kit.usage("router_password", "Say which router.")));
    if (!(await privateOnly(ctx, "router_password")) || !(await boxHere(ctx))) return;
    const router = await routerNamed(db, args[0]!);
    if (!router) return void (await kit.reply(ctx, `No router "${args[0]}". /routers lists them.`));
    await ask(
      ctx,
      "password",
      { mode: "password", routerId: router.id, name: router.name, username: router.username },
      passwordQuestion({ name: router.name, username: router.username }, false),
    );
  });

  kit.command(composer, "router_edit", async (ctx, admin, args) => {
    const [ref, rawField, ...rest] = args;
    const value = rest.join(" ");
    if (!ref || !rawField || value === "")
      return void (await kit.reply(
        ctx,
        kit.usage("router_edit", "Say the router, the field and its new value."),
      ));
    const field = rawField.toLowerCase();
    const router = await routerNamed(db, ref);
    if (!router) return void (await kit.reply(ctx, `No router "${ref}". /routers lists them.`));
    const change: Partial<{ host: string; port: number; tls: boolean; username: string }> = {};
    switch (field) {
      case "host": {
        const host = parseHost(value);
        if (!host) return void (await kit.reply(ctx, `"${value}" is not a host name or IP address.`));
        change.host = host;
        break;
      }
      case "port": {
        const port = parsePort(value);
        if (port === null) return void (await kit.reply(ctx, `"${value}" is not a port (1–65535).`));
        change.port = port;
        break;
      }
      case "user":
      case "username": {
        if (!USERNAME.test(value))
          return void (await kit.reply(ctx, "A username of 1 to 64 characters without spaces, please."));
        change.username = value;
        break;
      }
      case "tls": {
        const tls = parseYesNo(value);
        if (tls === null) return void (await kit.reply(ctx, `TLS is yes or no, not "${value}".`));
        change.tls = tls;
        // The port follows when it was the other mode's default.
        if (router.port === defaultPort(!tls)) change.port = defaultPort(tls);
        break;
      }
      case "password":
        return void (await kit.reply(
          ctx,
          `A password is never typed after a command: /router_password ${router.name}`,
        ));
      default:
        return void (await kit.reply(ctx, kit.usage("router_edit", `"${rawField}" cannot be changed here.`)));
    }
    const before = { host: router.host, port: router.port, tls: router.tls, username: router.username };
    const changed = Object.fromEntries(
      Object.entries(change).filter(([k, v]) => before[k as keyof typeof before] !== v),
    ) as typeof change;
    if (Object.keys(changed).length === 0)
      return void (await kit.reply(ctx, `${router.name} is already so: nothing changed.`));
    await kit.inTx(async (tx, _, now) => {
      await tx.update(routers).set(changed).where(eq(routers.id, router.id));
      await audit(tx, adminActor(admin.telegramId), now, {
        action: "router.edited",
        entity: "router",
        entityId: router.id,
        details: {
          name: router.name,
          changed,
          from: Object.fromEntries(Object.keys(changed).map((k) => [k, before[k as keyof typeof before]])),
        },
      });
      const after = { ...before, ...changed, name: router.name };
      await kit.say(
        tx,
        now,
        ctx.chat!.id,
        `✅ Router ${describeRouter(after)}.${changed.tls ? " With API-SSL, the router's certificate must be confirmed before the first connection is accepted." : ""}`,
      );
    });
    // After the commit: the connection open with the old address or login is dropped.
    await kit.deps.network?.routerChanged?.(router.id);
  });

  async function answer(ctx: Context, admin: Admin, step: Step, answers: Answers, text: string) {
    switch (step) {
      case "name": {
        const name = parseRouterName(text);
        if (!name)
          return void (await kit.reply(
            ctx,
            `"${text.slice(0, 60)}" cannot be a router name: 1–40 letters, digits, . _ - (not only digits). Its name?`,
          ));
        const taken = await routerNamed(db, name);
        if (taken)
          return void (await kit.reply(ctx, `A router named ${taken.name} exists already: another name?`));
        return ask(ctx, "host", { ...answers, name }, `(2/5) ${name}'s address: a host name or IP address?`);
      }
      case "host": {
        const host = parseHost(text);
        if (!host)
          return void (await kit.reply(
            ctx,
            `"${text.slice(0, 60)}" is not a host name or IP address, e.g. 10.0.0.1. Its address?`,
          ));
        return ask(
          ctx,
          "port",
          { ...answers, host },
          "(3/5) The API port? Type ok for the default (8728, or 8729 with TLS), or a number.",
        );
      }
      case "port": {
        let port: number | null = null;
        if (!/^(ok|default)$/i.test(text)) {
          port = parsePort(text);
          if (port === null)
            return void (await kit.reply(
              ctx,
              `"${text.slice(0, 60)}" is not a port (1–65535), or ok. The port?`,
            ));
        }
        return ask(ctx, "tls", { ...answers, port }, "(4/5) Use API-SSL (TLS)? yes or no.");
      }
      case "tls": {
        const tls = parseYesNo(text);
        if (tls === null) return void (await kit.reply(ctx, "Please type yes or no: use API-SSL (TLS)?"));
        return ask(
          ctx,
          "username",
          { ...answers, tls },
          "(5/5) The RouterOS user Tandao logs in as? (a user of group full or write, with API access)",
        );
      }
      case "username": {
        if (!USERNAME.test(text))
          return void (await kit.reply(
            ctx,
            "A username of 1 to 64 characters without spaces, please. The user?",
          ));
        const tls = answers.tls ?? false;
        const action: RouterAddAction = {
          kind: "feature",
          feature: "router_add",
          chatId: ctx.chat!.id,
          name: answers.name ?? "",
          host: answers.host ?? "",
          port: answers.port ?? defaultPort(tls),
          tls,
          username: text,
        };
        await kit.inTx(async (tx, _, now) => {
          await tx.delete(adminDialogs).where(where(keyOf(ctx)));
          await askConfirmation(
            tx,
            now,
            admin,
            ctx.chat!.id,
            action,
            `Add router ${describeRouter(action)}? Its password is asked next.`,
          );
        });
        return;
      }
      case "password":
        return;
    }
  }

  /**
   * The message holding a password: acted on and deleted in one transaction. Whatever happens, the
   * message is deleted and its stored copy scrubbed; the password is never repeated.
   */
  async function takePassword(ctx: Context, admin: Admin, answers: Answers, password: string) {
    const chatId = ctx.chat!.id;
    const messageId = ctx.message!.message_id;
    const key = keyOf(ctx);
    const forgetMessage = async (tx: Executor, now: Date) => {
      await enqueueChat(tx, now, [
        {
          channel: ADMIN_CHANNEL,
          to: String(chatId),
          language: "en",
          content: {
            kind: "raw",
            method: "deleteMessage",
            payload: { chat_id: chatId, message_id: messageId },
          },
        },
      ]);
      const inboxId = inboxIdOf.get(ctx.update);
      if (inboxId !== undefined)
        await tx
          .update(chatInbox)
          .set({ payload: scrubbed(ctx.update as unknown as Record<string, unknown>) })
          .where(eq(chatInbox.id, inboxId));
    };
    const box = kit.deps.box;
    try {
      await kit.inTx(async (tx, _, now) => {
        await forgetMessage(tx, now);
        // Claimed once: a redelivered update finds no dialog.
        const [claimed] = await tx
          .delete(adminDialogs)
          .where(and(where(key), eq(adminDialogs.kind, KIND), eq(adminDialogs.step, "password")))
          .returning({ answers: adminDialogs.answers });
        const a = (claimed?.answers ?? answers) as Answers;
        const say = (text: string) => kit.say(tx, now, chatId, text);
        if (!claimed) return say("That question has ended; your message was deleted and not used.");
        if (!box) return say("Router passwords cannot be sealed in this instance; nothing was changed.");
        if (password.trim() === "" || password.length > MAX_PASSWORD)
          return say(
            `That cannot be the password (empty or longer than ${MAX_PASSWORD}); your message was deleted. Start again: ${a.mode === "add" ? "/router_add" : `/router_password ${a.name}`}`,
          );
        const actor = adminActor(admin.telegramId);
        if (a.mode === "add") {
          if (await routerNamed(tx, a.name ?? ""))
            return say(`A router named ${a.name} exists now; nothing was added (your message was deleted).`);
          const tls = a.tls ?? false;
          const port = a.port ?? defaultPort(tls);
          const added = await addRouterAudited(tx, box, actor, now, {
            name: a.name ?? "",
            host: a.host ?? "",
            port,
            tls,
            username: a.username ?? "",
            password,
          });
          return say(
            `✅ Router ${describeRouter({ name: added.name, host: a.host ?? "", port, tls, username: a.username ?? "" })} added; your message with the password was deleted. /routers shows it once contacted.${tls ? " With API-SSL, its certificate must be confirmed before the first connection is accepted." : ""}`,
          );
        }
        const updated = await tx
          .update(routers)
          .set({ passwordEncrypted: box.seal(password) })
          .where(eq(routers.id, a.routerId ?? -1))
          .returning({ id: routers.id, name: routers.name });
        if (updated.length === 0) return say(`Router ${a.name} is gone; nothing was changed.`);
        await audit(tx, actor, now, {
          action: "router.password_changed",
          entity: "router",
          entityId: updated[0]!.id,
          details: { name: updated[0]!.name },
        });
        return say(`✅ New password of ${updated[0]!.name} saved; your message with it was deleted.`);
      });
      if (answers.mode === "password" && answers.routerId !== undefined)
        await kit.deps.network?.routerChanged?.(answers.routerId);
    } catch (error) {
      // Rolled back: the message is still deleted, the dialog ended, and the error told without the password.
      kit.log.error(
        { err: error instanceof Error ? error.message.replaceAll(password, "***") : "error" },
        "router password step failed",
      );
      await kit.inTx(async (tx, _, now) => {
        await forgetMessage(tx, now);
        await tx.delete(adminDialogs).where(where(key));
        await kit.say(
          tx,
          now,
          chatId,
          "Something went wrong; nothing was changed. Your message was deleted.",
        );
      });
    }
  }

  return composer;
}

/** The update as stored, with the password's text replaced. */
function scrubbed(update: Record<string, unknown>): Record<string, unknown> {
  const message = update.message as Record<string, unknown> | undefined;
  return message ? { ...update, message: { ...message, text: REMOVED } } : update;
}
