import { Composer, type Context } from "grammy";
import type { AdminKit } from "../kit.ts";
import { type AdminCommand, PERMISSIONS } from "../roles.ts";
import { routerEditCommand } from "./router-dialog-edit.ts";
import { routerNamed } from "./router-dialog-input.ts";
import { dropLatePassword, takeRouterPassword } from "./router-dialog-password.ts";
import { answerRouterStep, passwordQuestion, routerDialogs } from "./router-dialog-steps.ts";

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
 * The dialog lives in `admin_dialogs` (kind `router`, dialog.ts), as `/add`'s does: one per admin
 * and chat, forgotten after 10 minutes; another command or `/cancel_dialog` abandons it. This
 * feature comes before `/add`'s in the bot, so that at the password step a text that merely starts
 * with a slash (a password may) is still taken as the password, while a real command abandons it.
 */

/** Every command the admin bot knows, and `/cancel_dialog`: these abandon a dialog at any step. */
const KNOWN_COMMANDS = new Set<string>([...Object.keys(PERMISSIONS), "cancel_dialog"]);

export function routerDialogFeature(kit: AdminKit): Composer<Context> {
  const composer = new Composer<Context>();
  const dialogs = routerDialogs(kit);

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
    const dialog = await dialogs.current(ctx);
    if (!dialog) {
      // The password may still come after its question expired: it is not left in the chat either.
      const late = await dialogs.lapsed(ctx, "password");
      return late ? dropLatePassword(kit, dialogs, ctx, late) : next();
    }
    const { step, answers } = dialog;
    if (step === "password") return takeRouterPassword(kit, dialogs, ctx, kit.adminOf(ctx), answers, text);
    if (word !== null) return next();
    await answerRouterStep(kit, dialogs, ctx, kit.adminOf(ctx), step, answers, text.trim());
  });

  kit.command(composer, "router_add", async (ctx) => {
    if (!(await privateOnly(ctx, "router_add")) || !(await boxHere(ctx))) return;
    await dialogs.ask(
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
    const router = await routerNamed(kit.db, args[0]!);
    if (!router) return void (await kit.reply(ctx, `No router "${args[0]}". /routers lists them.`));
    await dialogs.ask(
      ctx,
      "password",
      { mode: "password", routerId: router.id, name: router.name, username: router.username },
      passwordQuestion({ name: router.name, username: router.username }, false),
    );
  });

  kit.command(composer, "router_edit", routerEditCommand(kit));

  return composer;
}
