import { eq } from "drizzle-orm";
import { Composer, type Context } from "grammy";
import { createVoucherBatch } from "../../../billing/vouchers.ts";
import { plans } from "../../../db/schema/index.ts";
import { queueAdminFile } from "../alert-queue.ts";
import type { AdminKit } from "../kit.ts";
import { adminActor } from "../roles.ts";

/**
 * `/vouchers <plan code> <count>`: a batch through src/billing/vouchers.ts (audited), then its A4
 * sheet (src/admin/voucher-sheet.ts) as a PDF document, in one transaction: the batch, its audit
 * entry and the document's outbox row exist together or not at all (a sheet that cannot be drawn
 * leaves no batch). Printed codes go live on the router once sold (`markVouchersSold`), as for any
 * batch.
 *
 * Only in a private chat: the sheet holds every code of the batch, which every member of a group
 * would keep in their chat history, and once the batch is sold each code is internet anyone can use.
 */

export const MAX_CHAT_BATCH = 500;

export function vouchersFeature(kit: AdminKit): Composer<Context> {
  const composer = new Composer<Context>();
  kit.command(composer, "vouchers", async (ctx, admin, args) => {
    if (ctx.chat?.type !== "private")
      return void (await kit.reply(
        ctx,
        "/vouchers sends a sheet holding every code of the batch: use it in a private chat with me.",
      ));
    const [code, countWord] = args;
    if (!code)
      return void (await kit.reply(ctx, kit.usage("vouchers", "Say the hotspot plan's code (see /plans).")));
    if (!countWord || !/^\d{1,4}$/.test(countWord) || +countWord < 1 || +countWord > MAX_CHAT_BATCH)
      return void (await kit.reply(ctx, kit.usage("vouchers", `Say how many: 1 to ${MAX_CHAT_BATCH}.`)));
    const [plan] = await kit.db.select().from(plans).where(eq(plans.code, code.toLowerCase()));
    if (!plan) return void (await kit.reply(ctx, `No plan ${code}. /plans lists them.`));
    const isp = kit.deps.ispName ?? "ISP";
    await kit.answerBilling(ctx, async (tx, inTxCtx, now) => {
      const { batch, codes } = await createVoucherBatch(inTxCtx, adminActor(admin.telegramId), {
        planId: plan.id,
        quantity: Number(countWord),
      });
      // Loaded when first asked for: the PDF and QR libraries are a heavy part of the app's start.
      const { voucherCards, voucherSheetPdf } = await import("../../../admin/voucher-sheet.ts");
      const pdf = await voucherSheetPdf({
        isp,
        wifiName: isp,
        vouchers: voucherCards(plan, codes),
        ...(kit.deps.hotspotLoginUrl ? { portalUrl: kit.deps.hotspotLoginUrl } : {}),
      });
      await queueAdminFile(tx, now, ctx.chat!.id, {
        method: "sendDocument",
        bytes: pdf,
        filename: `vouchers-${plan.code}-batch-${batch.id}.pdf`,
        caption: `Batch ${batch.id}: ${codes.length} × ${plan.name}. The codes work once sold: /sold batch ${batch.id}, or /sold <code…> for some of them.`,
      });
    });
  });
  return composer;
}
