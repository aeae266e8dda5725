import { Composer, type Context } from "grammy";
import type { AdminKit } from "../kit.ts";
import { parseNote, parseRole, parseTelegramId } from "../parse.ts";
import { addAdminInTx, listAdmins, removeAdminInTx } from "../roles.ts";

/** `/admins`, `/admin_add`, `/admin_remove`. */
export function teamFeature(kit: AdminKit): Composer<Context> {
  const { reply, usage, say } = kit;
  const team = new Composer<Context>();
  kit.command(team, "admins", async (ctx) => {
    const rows = await listAdmins(kit.db);
    await reply(
      ctx,
      ["Admins:", ...rows.map((a) => `  • ${a.telegramId} ${a.role}${a.name ? ` — ${a.name}` : ""}`)].join(
        "\n",
      ),
    );
  });
  kit.command(team, "admin_add", async (ctx, admin, args) => {
    const id = parseTelegramId(args[0]);
    if (!id.ok) return void (await reply(ctx, usage("admin_add", id.error)));
    const role = parseRole(args[1]);
    if (!role.ok) return void (await reply(ctx, usage("admin_add", role.error)));
    const name = parseNote(args.slice(2), 64);
    if (!name.ok) return void (await reply(ctx, usage("admin_add", name.error)));
    await kit.answerBilling(ctx, async (tx, _, now) => {
      const done = await addAdminInTx(
        tx,
        now,
        admin,
        {
          telegramId: id.value,
          role: role.value,
          name: name.value,
        },
        kit.deps.ownerTelegramId,
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
  kit.command(team, "admin_remove", async (ctx, admin, args) => {
    const id = parseTelegramId(args[0]);
    if (!id.ok) return void (await reply(ctx, usage("admin_remove", id.error)));
    await kit.answerBilling(ctx, async (tx, _, now) => {
      const removed = await removeAdminInTx(tx, now, admin, id.value, kit.deps.ownerTelegramId);
      await say(
        tx,
        now,
        ctx.chat!.id,
        `Removed ${removed.telegramId} (${removed.role}${removed.name ? `, ${removed.name}` : ""}).`,
      );
    });
  });
  return team;
}
