import { Composer, type Context } from "grammy";
import type { AdminKit } from "../kit.ts";
import { type AdminCommand, may, PERMISSIONS } from "../roles.ts";
import { USAGE } from "../texts.ts";

/** `/help`: what the caller's role may do; `/start`: a greeting. */
export function helpFeature(kit: AdminKit): Composer<Context> {
  const help = new Composer<Context>();
  kit.command(help, "help", async (ctx, admin) => {
    const mine = (Object.keys(PERMISSIONS) as AdminCommand[]).filter((c) => may(admin.role, c));
    await kit.reply(
      ctx,
      [
        `You are ${admin.role}${admin.name ? ` (${admin.name})` : ""}. You may use:`,
        ...mine.map((c) => USAGE[c]),
      ].join("\n"),
    );
  });
  help.command("start", async (ctx) => {
    const admin = kit.adminOf(ctx);
    await kit.reply(ctx, `Hello ${admin.name || "admin"} (${admin.role}). Type /help for what you may do.`);
  });
  return help;
}
