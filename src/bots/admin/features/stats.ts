import { Composer, type Context } from "grammy";
import { formatKes } from "../../../billing/money.ts";
import { type BusinessStats, businessStats } from "../../../billing/stats.ts";
import { counted } from "../../../lib/plural.ts";
import { formatDateTime } from "../../../messaging/render.ts";
import type { AdminKit } from "../kit.ts";

/** `/stats`: the business figures of src/billing/stats.ts (definitions there), as text. */

export function statsText(s: BusinessStats): string {
  return [
    `Figures at ${formatDateTime("en", s.at, s.timezone)}`,
    `Subscribers: ${s.active} active, ${s.suspended} suspended, ${s.pending} pending`,
    `This month: ${s.newThisMonth} new, ${s.churnedThisMonth} churned`,
    `Collected: ${formatKes(s.collectedTodayCents)} today, ${formatKes(s.collectedThisMonthCents)} this month`,
    `MRR: ${formatKes(s.mrrCents)} · ARPU: ${formatKes(s.arpuCents)}`,
    `Owing: ${counted(s.owing.customers, "customer")}, ${formatKes(s.owing.totalCents)} in all`,
    `Expiring in 24 h: ${s.expiringIn24h.total} (${s.expiringIn24h.unpaid} unpaid)`,
  ].join("\n");
}

export function statsFeature(kit: AdminKit): Composer<Context> {
  const composer = new Composer<Context>();
  kit.command(composer, "stats", async (ctx) => {
    const stats = await businessStats(kit.db, kit.clock, { timezone: kit.timezone });
    await kit.reply(ctx, statsText(stats));
  });
  return composer;
}
