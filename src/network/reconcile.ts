import { eq } from "drizzle-orm";
import { systemActor } from "../billing/context.ts";
import { markVouchersRedeemed } from "../billing/voucher-redemption.ts";
import type { Clock } from "../clock.ts";
import type { Db } from "../db/client.ts";
import { routers } from "../db/schema/index.ts";
import { type JobResult, runJobOutsideTransaction } from "../jobs/runner.ts";
import type { Logger } from "../logger.ts";
import { ensureWalledGarden, walledGardenEntries } from "../portal/walled-garden.ts";
import type { RouterApi, RouterRow } from "./connection.ts";
import { loadRouterDesiredState, loadSessionOwners } from "./desired.ts";
import {
  hotspotUserDiff,
  hotspotUserNeedsKick,
  hotspotUserValues,
  menus,
  secretDiff,
  secretNeedsKick,
  secretValues,
} from "./driver.ts";
import { LeaseExpiredError, sendWhileLeased } from "./lease-guard.ts";
import {
  type Drift,
  emptyCounts,
  type Op,
  type Plan,
  planEntries,
  planProfiles,
  type ReconcileCounts,
} from "./reconcile-plan.ts";
import {
  leaseProfiles,
  leaseTargets,
  reconcileStartWithinMs,
  releaseTargets,
  type TargetLeases,
} from "./targets.ts";
import { voucherUsesOn } from "./voucher-use.ts";

export type { Drift, DriftIssue, ReconcileCounts } from "./reconcile-plan.ts";

/**
 * Compares what a router holds (only entries with a Tandao marker) with what the database wants,
 * reports the drift and, unless it is a dry run, repairs it. All routers are handled concurrently.
 * The delivery worker changes the same entries meanwhile: the repair only writes targets it has
 * leased from the worker and whose desired state has not changed since it was read (targets.ts).
 */

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
  /** The router pool (any source of connections: tests watch what the reconciliation sends). */
  pool: { get(routerId: number): Promise<RouterApi> };
  logger?: Logger;
  /**
   * The captive portal's address (`PORTAL_URL`, else `PUBLIC_URL`): its host is kept in each
   * router's hotspot walled garden, so clients reach the portal before they log in.
   */
  portalUrl?: string;
}

const reconcileActor = systemActor("network.reconcile");

/** Commands sent at once on a router's connection (as many as it keeps in flight). */
const repairLanes = 256;

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
      // Hotspot user profiles carry the marker in `on-login` (they have no comment).
      api.run(`${menus.hotspotProfile}/print`, ["=.proplist=.id,name,rate-limit,on-login"]),
      api.run(`${menus.pppSecret}/print`, ["=.proplist=.id,name,password,service,profile,disabled,comment"]),
      api.run(`${menus.hotspotUser}/print`, [
        "=.proplist=.id,name,password,profile,limit-uptime,limit-bytes-total,disabled,comment,uptime",
      ]),
      api.run(`${menus.pppActive}/print`, ["=.proplist=.id,name"]),
      api.run(`${menus.hotspotActive}/print`, ["=.proplist=.id,user,uptime"]),
    ]);
    const owners = await loadSessionOwners(deps.db, routerId, deps.clock.now(), {
      ppp: namesWithoutEntry(pppActive, "name", secrets),
      hotspot: namesWithoutEntry(hotspotActive, "user", users),
    });
    const plan: Plan = {
      drift: report.drift,
      counts: report.counts,
      profileOps: [],
      ops: [],
      kicks: [],
      targets: new Map(),
      sendBy: Number.POSITIVE_INFINITY,
    };
    const repairApi = sendWhileLeased(api, deps.clock, () => plan.sendBy);
    planProfiles(repairApi, plan, "ppp", pppProfiles, desired.profiles);
    planProfiles(repairApi, plan, "hotspot", hotspotProfiles, desired.profiles);
    planEntries(repairApi, plan, {
      menu: menus.pppSecret,
      kind: "sub",
      rows: secrets,
      desired: desired.secrets.map((s) => ({ id: s.subscriptionId, want: s })),
      diff: secretDiff,
      values: secretValues,
      needsKick: secretNeedsKick,
      withdrawn: (want) => want.disabled,
      activeMenu: menus.pppActive,
      active: pppActive,
      activeKey: "name",
      sessionOwners: owners.ppp,
    });
    planEntries(repairApi, plan, {
      menu: menus.hotspotUser,
      kind: "voucher",
      rows: users,
      desired: desired.hotspotUsers.map((u) => ({ id: u.voucherId, want: u })),
      diff: hotspotUserDiff,
      values: hotspotUserValues,
      needsKick: hotspotUserNeedsKick,
      withdrawn: () => false,
      activeMenu: menus.hotspotActive,
      active: hotspotActive,
      activeKey: "user",
      sessionOwners: owners.hotspot,
    });
    if (!dryRun) {
      // Bookkeeping only, independent of the repair: a failure is logged and tried again next run.
      const uses = voucherUsesOn(users, hotspotActive, deps.clock.now());
      const marked = await markVouchersRedeemed(deps, reconcileActor, routerId, uses).catch(
        (error: unknown) => {
          deps.logger?.error({ err: error, routerId }, "vouchers seen in use could not be marked redeemed");
          return { redeemed: [], bound: [] };
        },
      );
      report.counts.vouchersUsed = marked.redeemed.length;
      report.counts.vouchersBound = marked.bound.length;
      await repair(deps, routerId, plan);
    }
    if (!dryRun && deps.portalUrl) await ensureWalledGarden(api, walledGardenEntries(deps.portalUrl));
  } catch (error) {
    report.ok = false;
    report.error = error instanceof Error ? error.message : String(error);
  }
  report.durationMs = Math.round(performance.now() - started);
  return report;
}

/** User names of sessions that no entry of `entries` carries. */
function namesWithoutEntry(sessions: RouterRow[], key: string, entries: RouterRow[]): string[] {
  const names = new Set(entries.map((e) => e.name));
  return [...new Set(sessions.flatMap((s) => (s[key] && !names.has(s[key]) ? [s[key]] : [])))];
}

export interface ReconcileRun {
  dryRun: boolean;
  /** `skipped`: another run was under way (no reports); `failed`: a router failed, or the run did. */
  status: JobResult["status"];
  error?: string;
  reports: RouterReconcileReport[];
  counts: ReconcileCounts & { routers: number; failedRouters: number };
}

export const reconcileJobName = "network.reconcile";
/** A run not ended after this long died with its instance (each router command has its own timeout). */
const reconcileStaleAfterMs = 10 * 60_000;

/**
 * Every router at once (a slow or dead router delays only its own report), as a job of the job
 * runner: one run at a time across instances, recorded in `job_runs`. A dry run is a job of its
 * own: it writes nothing, so it need not wait for a repair.
 */
export async function reconcileAll(
  deps: ReconcileDeps,
  options: { dryRun?: boolean } = {},
): Promise<ReconcileRun> {
  const dryRun = options.dryRun ?? false;
  const result = await runJobOutsideTransaction(
    deps.db,
    deps.clock,
    dryRun ? `${reconcileJobName}.dry_run` : reconcileJobName,
    async () => {
      const run = await reconcileEveryRouter(deps, dryRun);
      const failures = run.reports.filter((r) => !r.ok).map((r) => `${r.routerName}: ${r.error}`);
      return { counts: run.counts, error: failures.length > 0 ? failures.join("; ") : undefined, run };
    },
    { staleAfterMs: reconcileStaleAfterMs },
  );
  const run = result.outcome?.run ?? {
    reports: [],
    counts: { ...emptyCounts(), routers: 0, failedRouters: 0 },
  };
  return { dryRun, status: result.status, error: result.error, ...run };
}

async function reconcileEveryRouter(
  deps: ReconcileDeps,
  dryRun: boolean,
): Promise<Pick<ReconcileRun, "reports" | "counts">> {
  const all = await deps.db.select({ id: routers.id }).from(routers);
  const reports = await Promise.all(all.map((r) => reconcileRouter(deps, r.id, { dryRun })));
  const counts = { ...emptyCounts(), routers: reports.length, failedRouters: 0 };
  for (const report of reports) {
    if (!report.ok) counts.failedRouters++;
    for (const key of Object.keys(report.counts) as Array<keyof ReconcileCounts>)
      counts[key] += report.counts[key];
  }
  for (const report of reports) {
    if (report.drift.length > 0 || !report.ok) {
      deps.logger?.info(
        { routerId: report.routerId, dryRun, counts: report.counts, error: report.error },
        "router reconciled",
      );
    }
  }
  return { reports, counts };
}

/**
 * Sends the repair: profiles first (secrets and users refer to them), then the entries of the
 * targets leased from the worker, then the session kicks. Profiles are leased like targets (a plan's
 * profile on this router, `p:<router>:<plan>`): a speed an admin changed since the plans were read,
 * which the worker may have delivered already or is about to, is not written over. A target's
 * commands start while its lease surely outlasts them; one whose command fails or comes too late is
 * handed to the worker.
 */
async function repair(deps: ReconcileDeps, routerId: number, plan: Plan): Promise<void> {
  let firstError: unknown;
  const send = async (ops: Op[], leases: TargetLeases, unfinished: Set<string>) => {
    const startBy = plan.sendBy;
    const mine = ops.filter((op) => op.ref === undefined || leases.held.has(op.ref));
    let next = 0;
    const lane = async () => {
      while (next < mine.length) {
        const op = mine[next++]!;
        if (op.ref !== undefined && unfinished.has(op.ref)) continue;
        if (op.ref !== undefined && deps.clock.now().getTime() > startBy) {
          unfinished.add(op.ref);
          continue;
        }
        try {
          await op.run();
        } catch (error) {
          // Not sent in time: left to the worker, like a target not started in time.
          if (!(error instanceof LeaseExpiredError)) firstError ??= error;
          if (op.ref !== undefined) unfinished.add(op.ref);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(repairLanes, mine.length) }, lane));
  };
  // Each command is written only while the leases surely outlast it (lease-guard.ts).
  const sendWithinLease = () => {
    plan.sendBy = deps.clock.now().getTime() + reconcileStartWithinMs;
  };

  const profiles = await leaseProfiles(
    deps,
    routerId,
    plan.profileOps.map((op) => op.want),
  );
  sendWithinLease();
  const profilesUnfinished = new Set<string>();
  try {
    await send(plan.profileOps, profiles, profilesUnfinished);
  } finally {
    await releaseTargets(deps, profiles, profilesUnfinished);
  }
  if (firstError !== undefined) throw firstError;

  const leases = await leaseTargets(deps, routerId, [...plan.targets.values()]);
  plan.counts.deferred = profiles.deferred + leases.deferred;
  sendWithinLease();
  const unfinished = new Set<string>();
  try {
    await send(plan.ops, leases, unfinished);
    await send(plan.kicks, leases, unfinished);
  } finally {
    await releaseTargets(deps, leases, unfinished);
  }
  if (firstError !== undefined) throw firstError;
}
