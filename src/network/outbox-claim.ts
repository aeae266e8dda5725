import { sql } from "drizzle-orm";
import type { Clock } from "../clock.ts";
import { type Db, type Executor, queryRows } from "../db/client.ts";
import { intArray, textArray } from "../db/params.ts";
import { targetOf, tryTargetLocks } from "./targets.ts";

/** A `provisioning_outbox` row a worker has leased for delivery. */
export interface ClaimedRow {
  id: number;
  routerId: number | null;
  subscriptionId: number | null;
  voucherId: number | null;
  action: string;
  payload: Record<string, unknown>;
  attempts: number;
  /** When the lease taken on the row's target ends (injected clock, ms). */
  leaseEndsAt: number;
}

const at = (d: Date) => sql`${d.toISOString()}::timestamptz`;

/** The names whose session drops a row owes (driver.ts, `OwedDrops`; kept in `payload.dropSessions`). */
export function owedDropsOf(payload: Record<string, unknown> | null | undefined): string[] {
  const names = payload?.dropSessions;
  return Array.isArray(names) ? names.filter((n): n is string => typeof n === "string") : [];
}

/**
 * A jsonb value as the driver hands it over: parsed already, or its text. A JSON string is handed
 * over as itself, which is not JSON text: a row an older version (or a hand) wrote that way must not
 * throw inside the claim, which would hold back every other row on every router.
 */
function jsonValueOf(value: unknown): unknown {
  if (typeof value !== "string") return value;
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

/** The router in a subscription's target key (`s:<router>:<id>`); null for `*` and other targets. */
function subscriptionRouterOf(target: string): number | null {
  const [kind, router] = target.split(":");
  return kind === "s" && router !== "*" ? Number(router) : null;
}

/**
 * Claims due rows in one short transaction (routers are only called after it commits), leasing
 * each row's target until `leaseMs` from now; rows of routers in `skipRouters` (known down) wait.
 */
export async function claimDueRows(
  deps: { db: Db; clock: Clock },
  options: { leaseMs: number; batchSize: number },
  skipRouters: number[],
): Promise<ClaimedRow[]> {
  const now = deps.clock.now();
  const leaseUntil = new Date(now.getTime() + options.leaseMs);
  const routerFilter =
    skipRouters.length > 0
      ? sql`and (c.router_id is null or c.router_id not in (${sql.join(
          skipRouters.map((id) => sql`${id}`),
          sql`, `,
        )}))`
      : sql``;
  return deps.db.transaction(async (tx) => {
    const due = await queryRows<{ id: number; target: string; drops: unknown }>(
      tx,
      // Routers take turns (first row of each, then second…) so a backlog on one never starves the
      // others. Candidates are over-fetched so that rows locked by another worker are skipped, not
      // counted: concurrent workers each get a batch of their own.
      sql`select o.id, ${targetOf(sql`o`)} as target, o.payload->'dropSessions' as drops
          from provisioning_outbox o
          join (
            select id, turn from (
              select c.id, row_number() over (partition by c.router_id order by c.id) as turn
              from provisioning_outbox c
              where c.status = 'pending' and c.next_attempt_at <= ${at(now)}
                and (c.claimed_until is null or c.claimed_until <= ${at(now)}) ${routerFilter}
            ) ranked
            order by turn, id
            limit ${options.batchSize * 4}
          ) fair on fair.id = o.id
          where o.status = 'pending' and (o.claimed_until is null or o.claimed_until <= ${at(now)})
          order by fair.turn, o.id
          limit ${options.batchSize}
          for update of o skip locked`,
    );
    if (due.length === 0) return [];
    const newest = new Map<string, number>();
    for (const row of due) {
      const id = Number(row.id);
      newest.set(row.target, Math.max(newest.get(row.target) ?? 0, id));
    }
    const targets = [...newest.keys()];
    const targetList = sql.join(
      targets.map((t) => sql`${t}`),
      sql`, `,
    );
    // Another worker may be claiming or delivering the same target: leave it to them.
    const locked = await queryRows<{ t: string }>(tx, tryTargetLocks(sql`array[${targetList}]::text[]`));
    const busy = await queryRows<{ target: string }>(
      tx,
      sql`with leased as materialized (
            select ${targetOf(sql`o`)} as target from provisioning_outbox o
            where o.status = 'pending' and o.claimed_until > ${at(now)}
          )
          select distinct target from leased where target in (${targetList})`,
    );
    const busySet = new Set(busy.map((b) => b.target));
    const keep = locked.map((l) => l.t).filter((t) => !busySet.has(t));
    if (keep.length === 0) return [];
    const keepSet = new Set(keep);
    // Older rows of a kept target in this batch are covered by delivering the newest one. (An older
    // row still waiting out a back-off is delivered later and finds nothing left to change, but it
    // still makes the session drops it owes: its subscriber may be reconnected a second time.)
    const superseded = due
      .filter((r) => keepSet.has(r.target) && Number(r.id) !== newest.get(r.target))
      .map((r) => Number(r.id));
    if (superseded.length > 0) {
      await tx.execute(sql`
        update provisioning_outbox set status = 'superseded', done_at = ${at(now)}, claimed_until = null
        where id in (${sql.join(
          superseded.map((id) => sql`${id}::int`),
          sql`, `,
        )})`);
    }
    // A session drop owed by a superseded row, or by a row of the target given up (its drop would
    // otherwise never be made: the router's entry already matches), is owed by the row delivered.
    const givenUp = await takeDropsOfGivenUpRows(
      tx,
      keep.filter((t) => t.startsWith("s:")),
    );
    const owed = new Map<number, Set<string>>();
    for (const r of [...due, ...givenUp]) {
      const names = owedDropsOf({
        dropSessions: jsonValueOf(r.drops),
      });
      if (names.length === 0 || !keepSet.has(r.target)) continue;
      const into = newest.get(r.target)!;
      owed.set(into, new Set([...(owed.get(into) ?? []), ...names]));
    }
    for (const [id, names] of owed) {
      await tx.execute(sql`
        update provisioning_outbox set payload = jsonb_set(payload, '{dropSessions}', ${JSON.stringify([...names])}::jsonb)
        where id = ${id}`);
    }
    // A subscription's row that names no router takes the router its key was locked for (or stays
    // without one: the subscription had none, and its placement queues a row of its own).
    const claims = sql.join(
      keep.map((t) => sql`(${newest.get(t)!}::int, ${subscriptionRouterOf(t)}::int)`),
      sql`, `,
    );
    const claimed = await queryRows<{
      id: number;
      router_id: number | null;
      subscription_id: number | null;
      voucher_id: number | null;
      action: string;
      payload: Record<string, unknown> | string;
      attempts: number;
    }>(
      tx,
      sql`update provisioning_outbox o set claimed_until = ${at(leaseUntil)}, attempts = o.attempts + 1,
            router_id = coalesce(o.router_id, v.router_id)
          from (values ${claims}) as v(id, router_id)
          where o.id = v.id
          returning o.id, o.router_id, o.subscription_id, o.voucher_id, o.action, o.payload, o.attempts`,
    );
    return claimed
      .map((r) => ({
        id: Number(r.id),
        routerId: r.router_id === null ? null : Number(r.router_id),
        subscriptionId: r.subscription_id === null ? null : Number(r.subscription_id),
        voucherId: r.voucher_id === null ? null : Number(r.voucher_id),
        action: r.action,
        payload: (typeof r.payload === "string" ? JSON.parse(r.payload) : r.payload) as Record<
          string,
          unknown
        >,
        attempts: Number(r.attempts),
        leaseEndsAt: leaseUntil.getTime(),
      }))
      .sort((a, b) => a.id - b.id);
  });
}

/**
 * Takes the session drops still owed by given-up rows (outbox-outcomes.ts) of these subscription
 * targets off those rows (so they are made once), returning them. Looked up by router and status,
 * which the router index covers: given-up rows are few.
 */
async function takeDropsOfGivenUpRows(
  tx: Executor,
  targets: string[],
): Promise<Array<{ target: string; drops: unknown }>> {
  if (targets.length === 0) return [];
  const routerIds = [...new Set(targets.map((t) => t.split(":")[1]!))];
  const anyRouter = routerIds.includes("*");
  const numbered = routerIds.filter((r) => r !== "*").map(Number);
  const onRouters = sql.join(
    [
      ...(numbered.length > 0 ? [sql`o.router_id = any(${intArray(numbered)})`] : []),
      ...(anyRouter ? [sql`o.router_id is null`] : []),
    ],
    sql` or `,
  );
  return queryRows<{ target: string; drops: unknown }>(
    tx,
    sql`with owing as (
          select o.id, ${targetOf(sql`o`)} as target, o.payload->'dropSessions' as drops
          from provisioning_outbox o
          where o.status = 'dead' and (${onRouters}) and o.payload->'dropSessions' is not null
            and ${targetOf(sql`o`)} = any(${textArray(targets)})
          for update of o
        )
        update provisioning_outbox o set payload = o.payload - 'dropSessions'
        from owing where o.id = owing.id
        returning owing.target, owing.drops`,
  );
}
