import { editRouterAudited, type RouterSettings, settingsChanged } from "../../../network/router-edit.ts";
import type { AdminKit, CommandHandler } from "../kit.ts";
import { adminActor } from "../roles.ts";
import {
  defaultPort,
  describeRouter,
  parseHost,
  parsePort,
  parseYesNo,
  routerNamed,
  USERNAME,
} from "./router-dialog-input.ts";
import { forgetPasswordMessage } from "./router-dialog-password.ts";

/** `/router_edit <name> <host|port|user|tls> <value>`: one field of a router, audited. */
export const routerEditCommand =
  (kit: AdminKit): CommandHandler =>
  async (ctx, admin, args) => {
    const [ref, rawField, ...rest] = args;
    const value = rest.join(" ");
    if (!ref || !rawField || value === "")
      return void (await kit.reply(
        ctx,
        kit.usage("router_edit", "Say the router, the field and its new value."),
      ));
    const field = rawField.toLowerCase();
    const router = await routerNamed(kit.db, ref);
    if (!router) return void (await kit.reply(ctx, `No router "${ref}". /routers lists them.`));
    const change: Partial<RouterSettings> = {};
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
        // Typed all the same: the message holding it leaves the chat and the stored update.
        return kit.inTx(async (tx, _, now) => {
          await forgetPasswordMessage(tx, now, ctx);
          await kit.say(
            tx,
            now,
            ctx.chat!.id,
            `A password is never typed after a command; your message was deleted and not used: /router_password ${router.name}`,
          );
        });
      default:
        return void (await kit.reply(ctx, kit.usage("router_edit", `"${rawField}" cannot be changed here.`)));
    }
    const changed = settingsChanged(router, change);
    if (Object.keys(changed).length === 0)
      return void (await kit.reply(ctx, `${router.name} is already so: nothing changed.`));
    await kit.inTx(async (tx, _, now) => {
      const after = await editRouterAudited(tx, adminActor(admin.telegramId), now, router, changed);
      await kit.say(
        tx,
        now,
        ctx.chat!.id,
        `✅ Router ${describeRouter(after)}.${changed.tls ? ` With API-SSL, the router's certificate must be confirmed before the first connection is accepted (/router_cert ${after.name} once it has tried).` : ""}`,
      );
    });
    // After the commit: the connection open with the old address or login is dropped.
    await kit.deps.network?.routerChanged?.(router.id);
  };
