import { Composer, type Context } from "grammy";
import { formatDateTime } from "../../../messaging/render.ts";
import { anyRouterQueue, type RouterStatus, routerStatuses } from "../../../network/health.ts";
import type { AdminKit } from "../kit.ts";

/** `/routers`: each router's health as the database recorded it (no router is asked). */
export function routersFeature(kit: AdminKit): Composer<Context> {
  const composer = new Composer<Context>();
  kit.command(composer, "routers", async (ctx) => {
    const rows = await routerStatuses(kit.db);
    if (rows.length === 0)
      return void (await kit.reply(
        ctx,
        "No routers yet. Add one with /router_add (or from the CLI: npm run cli -- routers add).",
      ));
    const any = await anyRouterQueue(kit.db);
    await kit.reply(
      ctx,
      [
        `Routers (${rows.length}):`,
        ...rows.map((r) => routerLines(r, kit.timezone)),
        ...(any.pending + any.dead > 0
          ? [`For any router: ${any.pending} waiting, ${any.dead} given up.`]
          : []),
        ...(rows.some((r) => r.dead > 0)
          ? ["/failed lists what was given up; /retry <router> sends it again."]
          : []),
      ].join("\n"),
    );
  });
  return composer;
}

const STATE: Record<RouterStatus["state"], string> = {
  up: "✅ up",
  down: "🔴 DOWN",
  unknown: "⚪ not contacted yet",
};

export function routerLines(r: RouterStatus, timezone: string): string {
  const when = (d: Date | null) => (d ? formatDateTime("en", d, timezone) : "never");
  const lines = [
    `• ${r.name} (${r.host}:${r.port}${r.tls ? ", TLS" : ""}) — ${STATE[r.state]}`,
    `   last contact ${when(r.lastContactAt)} · queue ${r.pending} · dead ${r.dead}`,
  ];
  if (r.lastError) lines.push(`   last error ${when(r.lastErrorAt)}: ${r.lastError.slice(0, 200)}`);
  if (r.certificateToConfirm)
    lines.push(`   a new TLS certificate waits to be confirmed: /router_cert ${r.name}`);
  return lines.join("\n");
}
