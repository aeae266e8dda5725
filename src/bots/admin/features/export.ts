import { Composer, type Context } from "grammy";
import { audit } from "../../../billing/audit.ts";
import { exportCsv, isExportKind } from "../../../billing/export.ts";
import { queueAdminFile } from "../alert-queue.ts";
import type { AdminKit } from "../kit.ts";
import { adminActor } from "../roles.ts";

/**
 * `/export customers|payments|invoices`: the table as a CSV document in the chat (the customers'
 * one is the import's own format, so it can be edited and imported back with the CLI).
 */
export function exportFeature(kit: AdminKit): Composer<Context> {
  const composer = new Composer<Context>();
  kit.command(composer, "export", async (ctx, admin, args) => {
    const kind = args[0]?.toLowerCase() ?? "";
    if (!isExportKind(kind) || args.length > 1)
      return void (await kit.reply(ctx, kit.usage("export", "Say what to export.")));
    const exported = await exportCsv(kit.db, kit.timezone, kind);
    const day = kit.clock.now().toISOString().slice(0, 10);
    await kit.inTx(async (tx, _, now) => {
      // Customer data leaving the system: who took which table, and when.
      await audit(tx, adminActor(admin.telegramId), now, {
        action: "data.exported",
        entity: "export",
        entityId: kind,
        details: { rows: exported.rows },
      });
      await queueAdminFile(tx, now, ctx.chat!.id, {
        method: "sendDocument",
        bytes: exported.csv,
        filename: `${kind}-${day}.csv`,
        caption: `${exported.rows} ${kind}, ${day}`,
      });
    });
  });
  return composer;
}
