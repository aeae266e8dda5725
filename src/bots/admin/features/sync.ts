import { Composer, type Context } from "grammy";
import { audit } from "../../../billing/audit.ts";
import { runJobOutsideTransaction } from "../../../jobs/runner.ts";
import { formatDateTime } from "../../../messaging/render.ts";
import { findRouterByReference } from "../../../network/health.ts";
import { parseMarker } from "../../../network/markers.ts";
import { type RouterReconcileReport, reconcileJobName } from "../../../network/reconcile.ts";
import type { AdminKit, AdminNetwork } from "../kit.ts";
import { type Admin, adminActor } from "../roles.ts";

/** A `/sync` run not ended after this long died with its instance (as the scheduled reconciliation). */
export const SYNC_STALE_AFTER_MS = 10 * 60_000;
const DRIFT_SHOWN = 15;

/**
 * `/sync <router> [dry]`: a reconciliation of one router. The webhook only records the request and
 * answers "started" (one transaction); the reconciliation runs after the update was answered, as a
 * run of the job runner under the scheduled reconciliation's own job name (`network.reconcile`, or
 * `network.reconcile.dry_run`), so it never overlaps a scheduled run or another `/sync` in any
 * instance (then it says so). Its report is queued for the chat that asked when it ends.
 */
export function syncFeature(kit: AdminKit): Composer<Context> {
  const composer = new Composer<Context>();
  kit.command(composer, "sync", async (ctx, admin, args) => {
    const [ref, mode, ...rest] = args;
    if (!ref) return void (await kit.reply(ctx, kit.usage("sync", "Say which router.")));
    if ((mode !== undefined && mode.toLowerCase() !== "dry") || rest.length)
      return void (await kit.reply(ctx, kit.usage("sync", `Only "dry" may follow the router's name.`)));
    const network = kit.deps.network;
    if (!network)
      return void (await kit.reply(
        ctx,
        "The network worker does not run in this instance: reconcile from the CLI (npm run cli -- reconcile).",
      ));
    const router = await findRouterByReference(kit.db, ref);
    if (!router) return void (await kit.reply(ctx, `No router "${ref}". /routers lists them.`));
    const dryRun = mode !== undefined;
    const chatId = ctx.chat!.id;
    await kit.inTx(async (tx, _, now) => {
      await audit(tx, adminActor(admin.telegramId), now, {
        action: "router.sync_requested",
        entity: "router",
        entityId: router.id,
        details: { router: router.name, dryRun },
      });
      await kit.say(
        tx,
        now,
        chatId,
        `🔄 Reconciliation of ${router.name}${dryRun ? " (dry run: nothing will be changed)" : ""} started. The report follows here.`,
      );
    });
    kit.background(`sync ${router.name}`, () => runSync(kit, network, admin, chatId, router, dryRun));
  });
  return composer;
}

/** The reconciliation itself, outside any update: the job runner keeps it to one at a time. */
export async function runSync(
  kit: AdminKit,
  network: AdminNetwork,
  admin: Admin,
  chatId: number,
  router: { id: number; name: string },
  dryRun: boolean,
): Promise<void> {
  let text: string;
  let report: RouterReconcileReport | undefined;
  try {
    const result = await runJobOutsideTransaction(
      kit.db,
      kit.clock,
      dryRun ? `${reconcileJobName}.dry_run` : reconcileJobName,
      async () => {
        const done = await network.reconcileRouter(router.id, { dryRun });
        return { counts: { ...done.counts }, error: done.ok ? undefined : done.error, report: done };
      },
      { staleAfterMs: SYNC_STALE_AFTER_MS },
    );
    report = result.outcome?.report;
    text =
      result.status === "skipped"
        ? `⏳ ${router.name}: another reconciliation is running now; nothing was done. Try /sync again in a few minutes.`
        : report
          ? syncReportText(report, kit.timezone, kit.clock.now())
          : `❌ Reconciliation of ${router.name} failed: ${result.error ?? "unknown error"}`;
  } catch (error) {
    text = `❌ Reconciliation of ${router.name} failed: ${error instanceof Error ? error.message : String(error)}`;
  }
  await kit.inTx(async (tx, _, now) => {
    if (report)
      await audit(tx, adminActor(admin.telegramId), now, {
        action: dryRun ? "router.sync_checked" : "router.synced",
        entity: "router",
        entityId: router.id,
        ...(report.ok ? {} : { reason: report.error?.slice(0, 500) }),
        details: { router: router.name, dryRun, ok: report.ok, ...report.counts },
      });
    await kit.say(tx, now, chatId, text);
  });
}

/** A voucher's hotspot user is named by its code, which the chat must not show: its marker names it. */
const shownName = (d: { name: string; marker?: string }) =>
  parseMarker(d.marker)?.kind === "voucher" ? d.marker! : d.name;

export function syncReportText(report: RouterReconcileReport, timezone: string, at: Date): string {
  const c = report.counts;
  const verb = (did: string, would: string) => (report.dryRun ? would : did);
  const lines = [
    `${report.ok ? "✅" : "❌"} Reconciliation of ${report.routerName}${report.dryRun ? " (dry run)" : ""}, ${formatDateTime("en", at, timezone)}:`,
    `${verb("added", "to add")} ${c.created} · ${verb("fixed", "to fix")} ${c.updated} · ${verb("removed", "to remove")} ${c.removed} · failed ${c.conflicts + (report.ok ? 0 : 1)}`,
    `sessions ${verb("kicked", "to kick")} ${c.kicked} · unchanged ${c.unchanged}${c.deferred ? ` · left to the worker ${c.deferred}` : ""}${c.vouchersUsed ? ` · vouchers first used ${c.vouchersUsed}` : ""}${c.vouchersBound ? ` · vouchers kept by their first router ${c.vouchersBound}` : ""}`,
  ];
  if (!report.ok) lines.push(`Failed: ${report.error ?? "unknown error"}`);
  if (report.drift.length) {
    lines.push("Drift:");
    for (const d of report.drift.slice(0, DRIFT_SHOWN))
      lines.push(
        `  • ${d.menu} ${shownName(d)}: ${d.issue}${d.fields?.length ? ` (${d.fields.join(", ")})` : ""}`,
      );
    if (report.drift.length > DRIFT_SHOWN) lines.push(`  …and ${report.drift.length - DRIFT_SHOWN} more.`);
  }
  return lines.join("\n");
}
