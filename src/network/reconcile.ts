import { eq } from "drizzle-orm";
import type { Clock } from "../clock.ts";
import type { Db } from "../db/client.ts";
import { jobRuns, routers } from "../db/schema/index.ts";
import type { Logger } from "../logger.ts";
import { type RouterApi, type RouterRow, RouterTrapError } from "./connection.ts";
import { type DesiredProfile, loadRouterDesiredState } from "./desired.ts";
import {
  ensureProfile,
  hotspotUserDiff,
  hotspotUserNeedsKick,
  hotspotUserValues,
  menus,
  profileDiff,
  profileMenu,
  secretDiff,
  secretNeedsKick,
  secretValues,
} from "./driver.ts";
import { parseMarker } from "./markers.ts";
import type { RouterPool } from "./pool.ts";

/**
 * Compares what a router holds (only entries with a Tandao marker) with what the database wants,
 * reports the drift and, unless it is a dry run, repairs it. All routers are handled concurrently.
 */

export type DriftIssue = "missing" | "changed" | "extra" | "conflict";

export interface Drift {
  menu: string;
  name: string;
  marker?: string;
  issue: DriftIssue;
  /** For `changed`: the attributes that differ. */
  fields?: string[];
}

export interface ReconcileCounts {
  created: number;
  updated: number;
  removed: number;
  kicked: number;
  conflicts: number;
  unchanged: number;
}

export interface RouterReconcileReport {
  routerId: number;
  routerName: string;
  dryRun: boolean;
  ok: boolean;
  error?: string;
  drift: Drift[];
  counts: ReconcileCounts;
  /** Time this router took, on its own (routers are reconciled side by side). */
  durationMs: number;
}

export interface ReconcileDeps {
  db: Db;
  clock: Clock;
  pool: RouterPool;
  logger?: Logger;
}

const emptyCounts = (): ReconcileCounts => ({
  created: 0,
  updated: 0,
  removed: 0,
  kicked: 0,
  conflicts: 0,
  unchanged: 0,
});

interface Plan {
  drift: Drift[];
  counts: ReconcileCounts;
  /** Commands that repair the drift, in order of phases (profiles before what uses them). */
  profileOps: Array<() => Promise<unknown>>;
  ops: Array<() => Promise<unknown>>;
  kicks: Array<() => Promise<unknown>>;
}

export async function reconcileRouter(
  deps: ReconcileDeps,
  routerId: number,
  options: { dryRun?: boolean } = {},
): Promise<RouterReconcileReport> {
  const dryRun = options.dryRun ?? false;
  const started = performance.now();
  const [router] = await deps.db.select({ name: routers.name }).from(routers).where(eq(routers.id, routerId));
  const report: RouterReconcileReport = {
    routerId,
    routerName: router?.name ?? `#${routerId}`,
    dryRun,
    ok: true,
    drift: [],
    counts: emptyCounts(),
    durationMs: 0,
  };
  try {
    if (!router) throw new Error(`no router ${routerId}`);
    const desired = await loadRouterDesiredState(deps.db, routerId, deps.clock.now());
    const api = await deps.pool.get(routerId);
    const [pppProfiles, hotspotProfiles, secrets, users, pppActive, hotspotActive] = await Promise.all([
      api.run(`${menus.pppProfile}/print`, ["=.proplist=.id,name,rate-limit,comment"]),
      api.run(`${menus.hotspotProfile}/print`, ["=.proplist=.id,name,rate-limit,comment"]),
      api.run(`${menus.pppSecret}/print`, ["=.proplist=.id,name,password,service,profile,disabled,comment"]),
      api.run(`${menus.hotspotUser}/print`, [
        "=.proplist=.id,name,password,profile,limit-uptime,limit-bytes-total,disabled,comment",
      ]),
      api.run(`${menus.pppActive}/print`, ["=.proplist=.id,name"]),
      api.run(`${menus.hotspotActive}/print`, ["=.proplist=.id,user"]),
    ]);
    const plan: Plan = { drift: report.drift, counts: report.counts, profileOps: [], ops: [], kicks: [] };
    planProfiles(api, plan, "ppp", pppProfiles, desired.profiles);
    planProfiles(api, plan, "hotspot", hotspotProfiles, desired.profiles);
    planEntries(api, plan, {
      menu: menus.pppSecret,
      kind: "sub",
      rows: secrets,
      desired: desired.secrets.map((s) => ({ id: s.subscriptionId, want: s })),
      diff: secretDiff,
      values: secretValues,
      needsKick: secretNeedsKick,
      activeMenu: menus.pppActive,
      active: pppActive,
      activeKey: "name",
    });
    planEntries(api, plan, {
      menu: menus.hotspotUser,
      kind: "voucher",
      rows: users,
      desired: desired.hotspotUsers.map((u) => ({ id: u.voucherId, want: u })),
      diff: hotspotUserDiff,
      values: hotspotUserValues,
      needsKick: hotspotUserNeedsKick,
      activeMenu: menus.hotspotActive,
      active: hotspotActive,
      activeKey: "user",
    });
    if (!dryRun) {
      // Each phase is sent all at once: the connection pipelines the commands over one socket.
      await Promise.all(plan.profileOps.map((op) => op()));
      await Promise.all(plan.ops.map((op) => op()));
      await Promise.all(plan.kicks.map((op) => op()));
    }
  } catch (error) {
    report.ok = false;
    report.error = error instanceof Error ? error.message : String(error);
  }
  report.durationMs = Math.round(performance.now() - started);
  return report;
}

function planProfiles(
  api: RouterApi,
  plan: Plan,
  kind: DesiredProfile["kind"],
  rows: RouterRow[],
  desired: DesiredProfile[],
): void {
  const menu = profileMenu(kind);
  const byPlan = new Map<number, RouterRow>();
  const unmarked = new Set<string>();
  for (const row of rows) {
    const marker = parseMarker(row.comment);
    if (marker?.kind === "plan") byPlan.set(marker.id, row);
    else if (row.name) unmarked.add(row.name);
  }
  for (const want of desired) {
    if (want.kind !== kind) continue;
    const row = byPlan.get(want.planId);
    if (!row) {
      if (unmarked.has(want.name)) {
        plan.drift.push({ menu, name: want.name, marker: want.comment, issue: "conflict" });
        plan.counts.conflicts++;
        continue;
      }
      plan.drift.push({ menu, name: want.name, marker: want.comment, issue: "missing" });
      plan.counts.created++;
      // ensureProfile rather than a bare add: the delivery worker may create it meanwhile.
      plan.profileOps.push(() => ensureProfile(api, want));
      continue;
    }
    const diff = profileDiff(row, want);
    if (Object.keys(diff).length === 0) {
      plan.counts.unchanged++;
      continue;
    }
    plan.drift.push({
      menu,
      name: want.name,
      marker: want.comment,
      issue: "changed",
      fields: Object.keys(diff),
    });
    plan.counts.updated++;
    plan.profileOps.push(() => api.run(`${menu}/set`, [`=.id=${row[".id"]}`, ...toWords(diff)]));
  }
}

interface EntrySpec<W extends { name: string; comment: string }> {
  menu: string;
  kind: "sub" | "voucher";
  rows: RouterRow[];
  desired: Array<{ id: number; want: W }>;
  diff(row: RouterRow, want: W): Record<string, string>;
  values(want: W): Record<string, string>;
  needsKick(row: RouterRow, want: W | null): boolean;
  activeMenu: string;
  active: RouterRow[];
  activeKey: string;
}

function planEntries<W extends { name: string; comment: string }>(
  api: RouterApi,
  plan: Plan,
  spec: EntrySpec<W>,
) {
  const byId = new Map<number, RouterRow[]>();
  const unmarked = new Set<string>();
  for (const row of spec.rows) {
    const marker = parseMarker(row.comment);
    if (marker?.kind === spec.kind) {
      const list = byId.get(marker.id) ?? [];
      list.push(row);
      byId.set(marker.id, list);
    } else if (row.name) {
      unmarked.add(row.name);
    }
  }
  const sessions = new Map<string, string[]>();
  for (const s of spec.active) {
    const key = s[spec.activeKey];
    if (key) sessions.set(key, [...(sessions.get(key) ?? []), s[".id"]!]);
  }
  const kick = (name: string | undefined) => {
    const ids = name ? sessions.get(name) : undefined;
    if (!ids || ids.length === 0) return;
    sessions.delete(name!);
    plan.counts.kicked += ids.length;
    plan.kicks.push(() =>
      api.run(`${spec.activeMenu}/remove`, [`=.id=${ids.join(",")}`]).catch(() => undefined),
    );
  };
  const remove = (row: RouterRow, marker: string | undefined) => {
    plan.drift.push({ menu: spec.menu, name: row.name ?? "", marker, issue: "extra" });
    plan.counts.removed++;
    plan.ops.push(() => api.run(`${spec.menu}/remove`, [`=.id=${row[".id"]}`]));
    kick(row.name);
  };
  const wanted = new Set<number>();
  for (const { id, want } of spec.desired) {
    wanted.add(id);
    const [row, ...duplicates] = byId.get(id) ?? [];
    for (const duplicate of duplicates) remove(duplicate, want.comment);
    if (!row) {
      if (unmarked.has(want.name)) {
        plan.drift.push({ menu: spec.menu, name: want.name, marker: want.comment, issue: "conflict" });
        plan.counts.conflicts++;
        continue;
      }
      plan.drift.push({ menu: spec.menu, name: want.name, marker: want.comment, issue: "missing" });
      plan.counts.created++;
      plan.ops.push(() =>
        api.run(`${spec.menu}/add`, toWords(spec.values(want))).catch((error: unknown) => {
          // Created meanwhile by the delivery worker, which converges it to the same desired state.
          if (error instanceof RouterTrapError && /already (exists|have)/.test(error.message)) return [];
          throw error;
        }),
      );
      continue;
    }
    const diff = spec.diff(row, want);
    if (Object.keys(diff).length === 0) {
      plan.counts.unchanged++;
      continue;
    }
    plan.drift.push({
      menu: spec.menu,
      name: want.name,
      marker: want.comment,
      issue: "changed",
      fields: Object.keys(diff),
    });
    plan.counts.updated++;
    plan.ops.push(() => api.run(`${spec.menu}/set`, [`=.id=${row[".id"]}`, ...toWords(diff)]));
    if (spec.needsKick(row, want)) kick(row.name);
  }
  for (const [id, rows] of byId) {
    if (wanted.has(id)) continue;
    for (const row of rows) remove(row, row.comment);
  }
}

const toWords = (values: Record<string, string>) => Object.entries(values).map(([k, v]) => `=${k}=${v}`);

export interface ReconcileRun {
  dryRun: boolean;
  reports: RouterReconcileReport[];
  counts: ReconcileCounts & { routers: number; failedRouters: number };
}

/** Every router at once (a slow or dead router delays only its own report); the run is kept in `job_runs`. */
export async function reconcileAll(
  deps: ReconcileDeps,
  options: { dryRun?: boolean } = {},
): Promise<ReconcileRun> {
  const dryRun = options.dryRun ?? false;
  const startedAt = deps.clock.now();
  const all = await deps.db.select({ id: routers.id }).from(routers);
  const reports = await Promise.all(all.map((r) => reconcileRouter(deps, r.id, { dryRun })));
  const counts = { ...emptyCounts(), routers: reports.length, failedRouters: 0 };
  for (const report of reports) {
    if (!report.ok) counts.failedRouters++;
    for (const key of Object.keys(report.counts) as Array<keyof ReconcileCounts>)
      counts[key] += report.counts[key];
  }
  const failures = reports.filter((r) => !r.ok).map((r) => `${r.routerName}: ${r.error}`);
  await deps.db.insert(jobRuns).values({
    job: dryRun ? "network.reconcile.dry_run" : "network.reconcile",
    startedAt,
    finishedAt: deps.clock.now(),
    status: failures.length === 0 ? "ok" : "failed",
    counts,
    error: failures.length === 0 ? null : failures.join("; ").slice(0, 2000),
  });
  for (const report of reports) {
    if (report.drift.length > 0 || !report.ok) {
      deps.logger?.info(
        { routerId: report.routerId, dryRun, counts: report.counts, error: report.error },
        "router reconciled",
      );
    }
  }
  return { dryRun, reports, counts };
}
