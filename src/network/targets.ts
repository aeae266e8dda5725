import { type SQL, sql } from "drizzle-orm";
import type { Clock } from "../clock.ts";
import { type Db, queryRows } from "../db/client.ts";
import { intArray, textArray } from "../db/params.ts";
import { plans, subscriptions, vouchers } from "../db/schema/index.ts";
import {
  type DesiredHotspotUser,
  type DesiredProfile,
  type DesiredSecret,
  desiredHotspotUser,
  desiredProfile,
  desiredSecret,
} from "./desired.ts";

/**
 * A provisioning target (a subscriber's secret on a router, a voucher's hotspot user) is changed by
 * one writer at a time: the worker, or the reconciliation. Both serialise on the same two things:
 * - an advisory lock on the target's key while a claim transaction runs;
 * - a lease: a pending `provisioning_outbox` row of the target whose `claimed_until` is in the future.
 */

/**
 * The target of an outbox row, as text; `targetKey` must build the same strings. A subscription's
 * row queued while it had no router is delivered to the router it is on when claimed (the claim
 * writes that router into the row): its key is that router's, the key of the rows queued after the
 * subscription was placed, or two workers would write the same secret at once.
 */
export const targetOf = (alias: SQL) => sql`case
  when ${alias}.subscription_id is not null then 's:' || coalesce(${alias}.router_id::text,
    (select s.router_id::text from subscriptions s where s.id = ${alias}.subscription_id), '*') || ':' || ${alias}.subscription_id
  when ${alias}.voucher_id is not null then 'v:' || coalesce(${alias}.router_id::text, '*') || ':' || ${alias}.voucher_id
  else 'p:' || coalesce(${alias}.router_id::text, '*') || ':' || coalesce(${alias}.payload->>'planId', '') end`;

/** Takes the claim lock of each key it can; returns those (the others are being claimed right now). */
export const tryTargetLocks = (keys: SQL) =>
  sql`select t from unnest(${keys}) as t where pg_try_advisory_xact_lock(hashtext('tandao:provisioning:' || t))`;

export function targetKey(kind: "sub" | "voucher", routerId: number | null, id: number): string {
  return `${kind === "sub" ? "s" : "v"}:${routerId ?? "*"}:${id}`;
}

/** A list as one text parameter: lists of thousands stay one short statement text. */

export interface ReconcileTarget {
  kind: "sub" | "voucher";
  id: number;
  /** What the reconciliation read from the database, on which its writes are based (null: must not exist). */
  want: DesiredSecret | DesiredHotspotUser | null;
}

export interface TargetLeases {
  /** `kind:id` of the targets the reconciliation may write now. */
  held: Set<string>;
  /** Lease rows, by `kind:id` (targets whose subscription or voucher no longer exists need none). */
  rows: Map<string, number>;
  /** Targets left alone: the worker has work queued for them, or they changed since they were read. */
  deferred: number;
  /**
   * The lease the rows were written with (`claimed_until`): a row whose lease ran out may have been
   * claimed by a worker since, and is then the worker's, not the reconciliation's to delete or free.
   */
  until?: string;
}

/**
 * How long the reconciliation keeps a target from the worker, and within how long of taking it a
 * write may still start (as the worker does, a margin for the write's own timeout).
 */
export const reconcileLeaseMs = 120_000;
export const reconcileStartWithinMs = 75_000;

export const refOf = (t: Pick<ReconcileTarget, "kind" | "id">) => `${t.kind}:${t.id}`;

/** The reconciliation's name for a plan's profile on the router it repairs (leaseProfiles). */
export const profileRef = (planId: number) => `profile:${planId}`;

/** Desired states are flat records of strings, numbers and booleans built by the same functions. */
function sameState(
  a: ReconcileTarget["want"] | DesiredProfile,
  b: ReconcileTarget["want"] | DesiredProfile,
): boolean {
  if (a === null || b === null) return a === b;
  const x = a as unknown as Record<string, unknown>;
  const y = b as unknown as Record<string, unknown>;
  const keys = Object.keys(x);
  return keys.length === Object.keys(y).length && keys.every((k) => x[k] === y[k]);
}

/**
 * In one short transaction, takes the targets the reconciliation is about to write on `routerId`
 * away from the worker, after checking that its snapshot still holds for each: a target with a
 * pending outbox row (queued, backing off or being delivered) is left to the worker, which
 * converges it anyway; a target whose desired state changed since it was read is left to the next
 * run. Each target kept gets a leased outbox row, so that what the worker is asked meanwhile waits
 * for the reconciliation's writes and is delivered after them.
 */
export async function leaseTargets(
  deps: { db: Db; clock: Clock },
  routerId: number,
  targets: ReconcileTarget[],
): Promise<TargetLeases> {
  const leases: TargetLeases = { held: new Set(), rows: new Map(), deferred: 0 };
  if (targets.length === 0) return leases;
  const now = deps.clock.now();
  const subIds = targets.filter((t) => t.kind === "sub").map((t) => t.id);
  const voucherIds = targets.filter((t) => t.kind === "voucher").map((t) => t.id);
  return deps.db.transaction(async (tx) => {
    const subRows =
      subIds.length === 0
        ? []
        : await tx
            .select({
              id: subscriptions.id,
              routerId: subscriptions.routerId,
              status: subscriptions.status,
              networkUsername: subscriptions.networkUsername,
              networkPassword: subscriptions.networkPassword,
              code: plans.code,
            })
            .from(subscriptions)
            .innerJoin(plans, sql`${plans.id} = ${subscriptions.planId}`)
            .where(sql`${subscriptions.id} = any(${intArray(subIds)})`);
    const voucherRows =
      voucherIds.length === 0
        ? []
        : await tx
            .select({
              id: vouchers.id,
              routerId: vouchers.routerId,
              status: vouchers.status,
              expiresAt: vouchers.expiresAt,
              code: vouchers.code,
              limitUptimeSeconds: vouchers.limitUptimeSeconds,
              limitBytesTotal: vouchers.limitBytesTotal,
              plan: {
                code: plans.code,
                timeLimitSeconds: plans.timeLimitSeconds,
                periodUnit: plans.periodUnit,
                periodCount: plans.periodCount,
                dataCapBytes: plans.dataCapBytes,
              },
            })
            .from(vouchers)
            .innerJoin(plans, sql`${plans.id} = ${vouchers.planId}`)
            .where(sql`${vouchers.id} = any(${intArray(voucherIds)})`);
    const fresh = new Map<string, { want: ReconcileTarget["want"]; leaseRouterId: number | null }>();
    for (const row of subRows) {
      const want = row.routerId === routerId ? desiredSecret(row, row) : null;
      fresh.set(`sub:${row.id}`, { want, leaseRouterId: routerId });
    }
    for (const row of voucherRows) {
      const here = row.routerId === null || row.routerId === routerId;
      // Its future rows name the voucher's own router (or none): the lease must carry the same key.
      fresh.set(`voucher:${row.id}`, {
        want: here ? desiredHotspotUser(row, row.plan, now) : null,
        leaseRouterId: row.routerId,
      });
    }
    // The key the delivery worker locks: a voucher valid on every router has none of its own (`*`),
    // not this router's.
    const keyOf = (t: ReconcileTarget) => {
      const current = fresh.get(refOf(t));
      return targetKey(t.kind, current ? current.leaseRouterId : routerId, t.id);
    };
    const locked = await queryRows<{ t: string }>(tx, tryTargetLocks(textArray(targets.map(keyOf))));
    const lockedKeys = new Set(locked.map((l) => l.t));
    const queued = await queryRows<{ subscription_id: number | null; voucher_id: number | null }>(
      tx,
      sql`select distinct subscription_id, voucher_id from provisioning_outbox
          where status = 'pending' and (subscription_id = any(${intArray(subIds)})
            or voucher_id = any(${intArray(voucherIds)}))`,
    );
    const busy = new Set(
      queued.map((q) =>
        q.subscription_id !== null ? `sub:${Number(q.subscription_id)}` : `voucher:${Number(q.voucher_id)}`,
      ),
    );
    const toLease: Array<{
      router_id: number | null;
      sub: number | null;
      voucher: number | null;
      action: string;
    }> = [];
    for (const target of targets) {
      const ref = refOf(target);
      const current = fresh.get(ref);
      const unchanged = sameState(current?.want ?? null, target.want);
      if (!lockedKeys.has(keyOf(target)) || busy.has(ref) || !unchanged) {
        leases.deferred++;
        continue;
      }
      leases.held.add(ref);
      // A subscription or voucher that does not exist (an entry left from elsewhere) gets no rows.
      if (!current) continue;
      toLease.push({
        router_id: current.leaseRouterId,
        sub: target.kind === "sub" ? target.id : null,
        voucher: target.kind === "voucher" ? target.id : null,
        action:
          target.kind === "sub"
            ? target.want
              ? "ensure_account"
              : "remove_account"
            : target.want
              ? "ensure_voucher"
              : "remove_voucher",
      });
    }
    if (toLease.length > 0) {
      const leaseUntil = new Date(now.getTime() + reconcileLeaseMs).toISOString();
      leases.until = leaseUntil;
      const inserted = await queryRows<{
        id: number;
        subscription_id: number | null;
        voucher_id: number | null;
      }>(
        tx,
        sql`insert into provisioning_outbox
              (router_id, subscription_id, voucher_id, action, payload, next_attempt_at, claimed_until, created_at)
            select x.router_id, x.sub, x.voucher, x.action, '{"by":"reconcile"}'::jsonb,
              ${now.toISOString()}::timestamptz, ${leaseUntil}::timestamptz, ${now.toISOString()}::timestamptz
            from json_to_recordset(${JSON.stringify(toLease)}::json)
              as x(router_id int, sub int, voucher int, action text)
            returning id, subscription_id, voucher_id`,
      );
      for (const row of inserted) {
        const ref =
          row.subscription_id !== null
            ? `sub:${Number(row.subscription_id)}`
            : `voucher:${Number(row.voucher_id)}`;
        leases.rows.set(ref, Number(row.id));
      }
    }
    return leases;
  });
}

/**
 * Leases plans' profiles on `routerId` to the reconciliation, as `leaseTargets` does its targets:
 * the key is the worker's for a profile row of that router (`p:<router>:<plan>`), held by a leased
 * `ensure_profile` row. A profile is left alone while a profile row of its plan is pending for this
 * router or for every router (the worker brings the plan's speed anyway), or when its plan changed
 * since it was read. The worker writes a profile's speed only through such rows (the deliveries of
 * secrets and users only create a missing profile): with the lease held, a speed an admin changes
 * meanwhile queues a row that waits for the reconciliation's write, and is delivered after it.
 */
export async function leaseProfiles(
  deps: { db: Db; clock: Clock },
  routerId: number,
  wants: DesiredProfile[],
): Promise<TargetLeases> {
  const leases: TargetLeases = { held: new Set(), rows: new Map(), deferred: 0 };
  if (wants.length === 0) return leases;
  const now = deps.clock.now();
  const planIds = [...new Set(wants.map((w) => w.planId))];
  const keyOf = (planId: number) => `p:${routerId}:${planId}`;
  return deps.db.transaction(async (tx) => {
    const current = await tx
      .select()
      .from(plans)
      .where(sql`${plans.id} = any(${intArray(planIds)})`);
    const fresh = new Map(current.map((p) => [p.id, desiredProfile(p)]));
    const locked = await queryRows<{ t: string }>(tx, tryTargetLocks(textArray(planIds.map(keyOf))));
    const lockedKeys = new Set(locked.map((l) => l.t));
    const queued = await queryRows<{ plan_id: string }>(
      tx,
      sql`select distinct payload->>'planId' as plan_id from provisioning_outbox
          where status = 'pending' and action = 'ensure_profile'
            and subscription_id is null and voucher_id is null
            and (router_id = ${routerId} or router_id is null)
            and payload->>'planId' = any(${textArray(planIds.map(String))})`,
    );
    const busy = new Set(queued.map((q) => Number(q.plan_id)));
    const toLease: number[] = [];
    for (const want of wants) {
      const ref = profileRef(want.planId);
      const unchanged = sameState(fresh.get(want.planId) ?? null, want);
      if (leases.held.has(ref)) continue;
      if (!lockedKeys.has(keyOf(want.planId)) || busy.has(want.planId) || !unchanged) {
        leases.deferred++;
        continue;
      }
      leases.held.add(ref);
      toLease.push(want.planId);
    }
    if (toLease.length > 0) {
      const leaseUntil = new Date(now.getTime() + reconcileLeaseMs).toISOString();
      leases.until = leaseUntil;
      const inserted = await queryRows<{ id: number; plan_id: string }>(
        tx,
        sql`insert into provisioning_outbox
              (router_id, action, payload, next_attempt_at, claimed_until, created_at)
            select ${routerId}, 'ensure_profile', jsonb_build_object('planId', p, 'by', 'reconcile'),
              ${now.toISOString()}::timestamptz, ${leaseUntil}::timestamptz, ${now.toISOString()}::timestamptz
            from unnest(${intArray(toLease)}) as p
            returning id, payload->>'planId' as plan_id`,
      );
      for (const row of inserted) leases.rows.set(profileRef(Number(row.plan_id)), Number(row.id));
    }
    return leases;
  });
}

/**
 * Ends the reconciliation's leases. The row of a target written was only a lock: it goes (the
 * outbox keeps what there is to deliver, not a log of repairs). One whose write failed or never
 * started stays, due now, for the worker, which converges the target to the database's state.
 */
export async function releaseTargets(
  deps: { db: Db; clock: Clock },
  leases: TargetLeases,
  unfinished: Set<string>,
): Promise<void> {
  const now = deps.clock.now().toISOString();
  const written: number[] = [];
  const handOver: number[] = [];
  for (const [ref, id] of leases.rows) (unfinished.has(ref) ? handOver : written).push(id);
  if (!leases.until) return;
  if (written.length > 0) {
    await deps.db.execute(sql`delete from provisioning_outbox
      where id = any(${intArray(written)}) and claimed_until = ${leases.until}::timestamptz`);
  }
  if (handOver.length > 0) {
    await deps.db.execute(sql`
      update provisioning_outbox set claimed_until = null, next_attempt_at = ${now}::timestamptz
      where id = any(${intArray(handOver)}) and claimed_until = ${leases.until}::timestamptz`);
  }
}
