import { Composer, type Context } from "grammy";
import { monthlyRevenue } from "../../../billing/stats.ts";
import { queueAdminFile } from "../alert-queue.ts";
import type { AdminKit } from "../kit.ts";

/**
 * `/report [YYYY-MM]`: the twelve months up to that month (default: this one) as a chart (PNG,
 * `sendPhoto`) and the figures (CSV, `sendDocument`), from src/admin/report.ts. Files cannot go
 * through the queued `sendMessage`: each is an outbox row of its own for the admin chat worker, its
 * bytes in base64 under `{"$file": …}`, uploaded as a file by the Telegram sender.
 */

const REPORT_MONTHS = 12;
const MONTH = /^(\d{4})-(0[1-9]|1[0-2])$/;

/** `YYYY-MM` of `now` in `timezone`. */
function monthOf(now: Date, timezone: string): string {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: timezone, year: "numeric", month: "2-digit" })
    .formatToParts(now)
    .reduce<Record<string, string>>((acc, p) => Object.assign(acc, { [p.type]: p.value }), {});
  return `${parts.year}-${parts.month}`;
}

const monthIndex = (month: string) => Number(month.slice(0, 4)) * 12 + Number(month.slice(5, 7)) - 1;

export function reportFeature(kit: AdminKit): Composer<Context> {
  const composer = new Composer<Context>();
  kit.command(composer, "report", async (ctx, _admin, args) => {
    const now = kit.clock.now();
    const current = monthOf(now, kit.timezone);
    const month = args[0] ?? current;
    if (!MONTH.test(month) || args.length > 1)
      return void (await kit.reply(
        ctx,
        kit.usage("report", `"${args.join(" ")}" is not a month: e.g. 2026-03.`),
      ));
    const back = monthIndex(current) - monthIndex(month);
    if (back < 0) return void (await kit.reply(ctx, `${month} has not happened yet.`));
    if (back + REPORT_MONTHS > 120)
      return void (await kit.reply(ctx, "That is more than ten years ago: the report goes back ten years."));
    const rows = await monthlyRevenue(kit.db, {
      months: back + REPORT_MONTHS,
      timezone: kit.timezone,
      now,
    });
    // Loaded when first asked for: the chart's libraries are a heavy part of the app's start.
    const { revenueReport } = await import("../../../admin/report.ts");
    const report = await revenueReport(rows.slice(0, rows.length - back), {
      isp: kit.deps.ispName ?? "ISP",
      month,
    });
    const first = report.months[0] ?? month;
    await kit.inTx(async (tx, _, at) => {
      await queueAdminFile(tx, at, ctx.chat!.id, {
        method: "sendPhoto",
        bytes: report.png,
        filename: `report-${month}.png`,
        caption: `Revenue and subscribers, ${first} to ${month}`,
      });
      await queueAdminFile(tx, at, ctx.chat!.id, {
        method: "sendDocument",
        bytes: report.csv,
        filename: `report-${first}-to-${month}.csv`,
        caption: "The figures (KES)",
      });
    });
  });
  return composer;
}
