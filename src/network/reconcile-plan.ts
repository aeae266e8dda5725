import { type RouterApi, type RouterRow, RouterTrapError } from "./connection.ts";
import type { DesiredHotspotUser, DesiredProfile, DesiredSecret, SessionOwner } from "./desired.ts";
import { ensureProfile, profileDiff, profileMarkerOf, profileMenu, removeIds } from "./driver.ts";
import { parseMarker, subscriptionMarker, voucherMarker } from "./markers.ts";
import { profileRef, type ReconcileTarget, refOf } from "./targets.ts";

/**
 * The reconciliation's plan for one router: the drift between what it holds and what the database
 * wants, and the commands that repair it, each tied to the target it changes (reconcile.ts sends
 * only those of targets it could lease from the delivery worker).
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

/** The drift found; `deferred` is how many of the targets concerned were left to the worker. */
export type ReconcileCounts = {
  created: number;
  updated: number;
  removed: number;
  kicked: number;
  conflicts: number;
  unchanged: number;
  deferred: number;
  /** Sold vouchers seen in use for the first time (now marked redeemed). */
  vouchersUsed: number;
  /** Vouchers for any router seen in use here first: bound to this router, taken off the others. */
  vouchersBound: number;
};

export const emptyCounts = (): ReconcileCounts => ({
  created: 0,
  updated: 0,
  removed: 0,
  kicked: 0,
  conflicts: 0,
  unchanged: 0,
  deferred: 0,
  vouchersUsed: 0,
  vouchersBound: 0,
});

/** A command of the repair; `ref` names the target it changes (`kind:id`), none for profiles. */
export interface Op {
  ref?: string;
  run(): Promise<unknown>;
}

/** A command that writes a plan's profile (`ref` is `profile:<plan id>`), from `want`. */
export interface ProfileOp extends Op {
  ref: string;
  want: DesiredProfile;
}

export interface Plan {
  drift: Drift[];
  counts: ReconcileCounts;
  /** Commands that repair the drift, in order of phases (profiles before what uses them). */
  profileOps: ProfileOp[];
  ops: Op[];
  kicks: Op[];
  /** Every target an op changes, with the desired state the op is based on. */
  targets: Map<string, ReconcileTarget>;
  /** Commands are written only until then (injected clock, ms): set once the targets are leased. */
  sendBy: number;
}

export function planProfiles(
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
    const marker = parseMarker(profileMarkerOf(kind, row));
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
      plan.profileOps.push({ ref: profileRef(want.planId), want, run: () => ensureProfile(api, want) });
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
    plan.profileOps.push({
      ref: profileRef(want.planId),
      want,
      run: () => api.run(`${menu}/set`, [`=.id=${row[".id"]}`, ...toWords(diff)]),
    });
  }
}

export interface EntrySpec<W extends DesiredSecret | DesiredHotspotUser> {
  menu: string;
  kind: "sub" | "voucher";
  rows: RouterRow[];
  desired: Array<{ id: number; want: W }>;
  diff(row: RouterRow, want: W): Record<string, string>;
  values(want: W): Record<string, string>;
  needsKick(row: RouterRow, want: W | null): boolean;
  /** Whether `want` allows no session at all (a disabled secret). */
  withdrawn(want: W): boolean;
  activeMenu: string;
  active: RouterRow[];
  activeKey: string;
  /** Tandao's subscriptions or vouchers named by sessions without an entry of that name (loadSessionOwners). */
  sessionOwners: Map<string, SessionOwner<W>>;
}

export function planEntries<W extends DesiredSecret | DesiredHotspotUser>(
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
  const target = (id: number, want: W | null): string => {
    const t: ReconcileTarget = { kind: spec.kind, id, want };
    plan.targets.set(refOf(t), t);
    return refOf(t);
  };
  /** `driftOf`: the session is the only drift (its entry already matches, or is gone). */
  const kick = (name: string | undefined, ref: () => string, driftOf?: string) => {
    const ids = name ? sessions.get(name) : undefined;
    if (!ids || ids.length === 0) return;
    sessions.delete(name!);
    if (driftOf !== undefined) {
      plan.drift.push({ menu: spec.activeMenu, name: name!, marker: driftOf, issue: "extra" });
    }
    plan.counts.kicked += ids.length;
    plan.kicks.push({
      ref: ref(),
      // A session that hung up meanwhile is dropped already (removeIds); anything else (not sent,
      // router lost) is unfinished.
      run: () => removeIds(api, spec.activeMenu, ids).then(() => []),
    });
  };
  const remove = (row: RouterRow, marker: string | undefined, ref: string) => {
    plan.drift.push({ menu: spec.menu, name: row.name ?? "", marker, issue: "extra" });
    plan.counts.removed++;
    plan.ops.push({ ref, run: () => api.run(`${spec.menu}/remove`, [`=.id=${row[".id"]}`]) });
    kick(row.name, () => ref);
  };
  const wanted = new Set<number>();
  for (const { id, want } of spec.desired) {
    wanted.add(id);
    const [row, ...duplicates] = byId.get(id) ?? [];
    for (const duplicate of duplicates) remove(duplicate, want.comment, target(id, want));
    if (!row) {
      if (unmarked.has(want.name)) {
        plan.drift.push({ menu: spec.menu, name: want.name, marker: want.comment, issue: "conflict" });
        plan.counts.conflicts++;
        continue;
      }
      plan.drift.push({ menu: spec.menu, name: want.name, marker: want.comment, issue: "missing" });
      plan.counts.created++;
      plan.ops.push({
        ref: target(id, want),
        run: () =>
          api.run(`${spec.menu}/add`, toWords(spec.values(want))).catch((error: unknown) => {
            // Created since the print (by the worker before the lease, or by hand): nothing to add.
            if (error instanceof RouterTrapError && /already (exists|have)/.test(error.message)) return [];
            throw error;
          }),
      });
      continue;
    }
    const diff = spec.diff(row, want);
    if (Object.keys(diff).length === 0) {
      plan.counts.unchanged++;
      // A session left on a disabled entry (its drop was lost with the connection) goes now.
      if (spec.withdrawn(want)) kick(row.name, () => target(id, want), want.comment);
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
    const ref = target(id, want);
    plan.ops.push({ ref, run: () => api.run(`${spec.menu}/set`, [`=.id=${row[".id"]}`, ...toWords(diff)]) });
    if (spec.needsKick(row, want) || spec.withdrawn(want)) kick(row.name, () => ref);
  }
  for (const [id, rows] of byId) {
    if (wanted.has(id)) continue;
    for (const row of rows) remove(row, row.comment, target(id, null));
  }
  // Sessions of Tandao's users whose entry is gone from the router: a removal whose drop was lost.
  // (A wanted, enabled user's missing entry is being added above: its session may stay.)
  for (const [name, owner] of spec.sessionOwners) {
    if (owner.want !== null && !spec.withdrawn(owner.want)) continue;
    kick(name, () => target(owner.id, owner.want), owner.want?.comment ?? markerOf[spec.kind](owner.id));
  }
}

const markerOf = { sub: subscriptionMarker, voucher: voucherMarker };

const toWords = (values: Record<string, string>) => Object.entries(values).map(([k, v]) => `=${k}=${v}`);
