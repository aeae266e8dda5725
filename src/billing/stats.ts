import { sql } from "drizzle-orm";
import type { Clock } from "../clock.ts";
import { type Executor, queryRows } from "../db/client.ts";
import { ts } from "../db/params.ts";

/**
 * Business figures for the admin chat (`/stats`, `/report`). Read-only, set-based: one statement per
 * group of figures, whatever the number of subscribers. Money is integer KES cents throughout.
 *
 * Definitions (all "today" and "this month" are calendar days and months in the ISP's time zone):
 * - active / suspended / pending: subscriptions by their current status (cancelled ones are churn).
 * - new this month: subscriptions created this month (`subscriptions.created_at`), whatever their
 *   status now, pending and since-cancelled included.
 * - churned this month: subscriptions cancelled this month (`cancelled_at`); cancelled is the only
 *   final state a subscription has.
 * - collected: the sum of applied payments received in the day or month (`payments.received_at`):
 *   money credited to an account and walk-in voucher sales alike; unmatched payments count once an
 *   admin assigns them (at their original receipt time).
 * - MRR: the monthly equivalent of the current plan price of every active subscription (see
 *   `monthlyEquivalentCents`); ARPU: MRR / active subscriptions, half-up to a cent.
 * - owing: customers whose ledger balance is below zero (a charged invoice not yet covered, due or
 *   not): how many, and the total they owe (a positive number of cents).
 * - expiring: active subscriptions whose current period ends within the next 24 hours; `unpaid`:
 *   those of them with an open invoice (they will be suspended by dunning unless they pay).
 */
export interface BusinessStats {
  at: Date;
  timezone: string;
  active: number;
  suspended: number;
  pending: number;
  newThisMonth: number;
  churnedThisMonth: number;
  collectedTodayCents: number;
  collectedThisMonthCents: number;
  mrrCents: number;
  arpuCents: number;
  owing: { customers: number; totalCents: number };
  expiringIn24h: { total: number; unpaid: number };
}

/**
 * A month is 365.25 / 12 = 30.4375 days = 487/16 days = 1461/2 hours. A plan of `count` units at
 * `price` is worth, per month: months price/count, days price·487/(16·count), hours
 * price·1461/(2·count), each rounded half-up to a whole cent per subscription (so MRR is off the
 * exact sum by at most half a cent per subscription). Integer arithmetic only, here and in SQL.
 */
export function monthlyEquivalentCents(priceCents: number, unit: "months" | "days" | "hours", count: number) {
  const [num, den] = unit === "months" ? [1, 1] : unit === "days" ? [487, 16] : [1461, 2];
  return halfUp(priceCents * num, den * count);
}

/** `numerator / denominator` rounded half-up, for non-negative integers. */
export function halfUp(numerator: number, denominator: number): number {
  if (denominator <= 0) return 0;
  return Math.floor((2 * numerator + denominator) / (2 * denominator));
}

/** SQL twin of `monthlyEquivalentCents` (bigint division of non-negative values truncates = floors). */
const monthlyEquivalentSql = sql`(case p.period_unit
    when 'months' then (2 * p.price_cents + p.period_count) / (2 * p.period_count)
    when 'days' then (2 * p.price_cents * 487 + 16 * p.period_count) / (32 * p.period_count)
    else (2 * p.price_cents * 1461 + 2 * p.period_count) / (4 * p.period_count)
  end)`;

const int = (value: unknown): number => Number(value ?? 0);

export async function businessStats(
  db: Executor,
  clock: Clock,
  options: { timezone: string },
): Promise<BusinessStats> {
  const now = clock.now();
  const tz = options.timezone;
  const at = sql`${now.toISOString()}::timestamptz`;
  const local = sql`(${at} at time zone ${tz})`;
  // The calendar's bounds, worked out once: written into each query as expressions, they were
  // evaluated again for every row scanned (a time-zone conversion per payment), and kept the
  // planner from using the index on received_at.
  const [bounds] = await queryRows<Record<string, string | Date>>(
    db,
    sql`select date_trunc('day', ${local}) at time zone ${tz} as day_start,
          (date_trunc('day', ${local}) + interval '1 day') at time zone ${tz} as day_end,
          date_trunc('month', ${local}) at time zone ${tz} as month_start,
          (date_trunc('month', ${local}) + interval '1 month') at time zone ${tz} as month_end`,
  );
  const bound = (name: string) => ts(new Date(bounds![name]!));
  const dayStart = bound("day_start");
  const dayEnd = bound("day_end");
  const monthStart = bound("month_start");
  const monthEnd = bound("month_end");

  // Three independent statements, sent at once (a pool runs them side by side). "Unpaid" asks the
  // open invoices once (a hashed set), not once per subscription about to expire.
  const subsQuery = queryRows<Record<string, unknown>>(
    db,
    sql`select
      count(*) filter (where s.status = 'active')::int as active,
      count(*) filter (where s.status = 'suspended')::int as suspended,
      count(*) filter (where s.status = 'pending')::int as pending,
      count(*) filter (where s.created_at >= ${monthStart} and s.created_at < ${monthEnd})::int as new_this_month,
      count(*) filter (where s.cancelled_at >= ${monthStart} and s.cancelled_at < ${monthEnd})::int as churned,
      coalesce(sum(${monthlyEquivalentSql}) filter (where s.status = 'active'), 0)::bigint as mrr,
      count(*) filter (where s.status = 'active' and s.current_period_end > ${at}
        and s.current_period_end <= ${at} + interval '24 hours')::int as expiring,
      count(*) filter (where s.status = 'active' and s.current_period_end > ${at}
        and s.current_period_end <= ${at} + interval '24 hours'
        and s.id in (select i.subscription_id from invoices i where i.status = 'open'))::int
        as expiring_unpaid
    from subscriptions s join plans p on p.id = s.plan_id`,
  );
  const moneyQuery = queryRows<Record<string, unknown>>(
    db,
    sql`select
      coalesce(sum(amount_cents) filter (where received_at >= ${dayStart} and received_at < ${dayEnd}), 0)::bigint
        as today,
      coalesce(sum(amount_cents), 0)::bigint as month
    from payments
    where status = 'applied' and method <> 'adjustment'
      and received_at >= ${monthStart} and received_at < ${monthEnd}`,
  );
  // What customers owe is what their open invoices still lack: settlement (ledger.ts) applies every
  // credit to open invoices as it arrives, so an open invoice and unapplied credit never coexist,
  // and a customer's negative balance is exactly their open invoices' remainder. Read from the open
  // invoices (partial index), not by summing anyone's ledger.
  const owingQuery = queryRows<Record<string, unknown>>(
    db,
    sql`select count(distinct customer_id)::int as customers,
          coalesce(sum(amount_cents - paid_cents), 0)::bigint as total
        from invoices where status = 'open' and amount_cents > paid_cents`,
  );
  const [[subs], [money], [owing]] = await Promise.all([subsQuery, moneyQuery, owingQuery]);
  const active = int(subs?.active);
  const mrrCents = int(subs?.mrr);
  return {
    at: now,
    timezone: tz,
    active,
    suspended: int(subs?.suspended),
    pending: int(subs?.pending),
    newThisMonth: int(subs?.new_this_month),
    churnedThisMonth: int(subs?.churned),
    collectedTodayCents: int(money?.today),
    collectedThisMonthCents: int(money?.month),
    mrrCents,
    arpuCents: halfUp(mrrCents, active),
    owing: { customers: int(owing?.customers), totalCents: int(owing?.total) },
    expiringIn24h: { total: int(subs?.expiring), unpaid: int(subs?.expiring_unpaid) },
  };
}

export interface MonthFigures {
  /** `YYYY-MM` in the ISP's time zone. */
  month: string;
  collectedCents: number;
  newSubscribers: number;
  /**
   * Subscribers on the books at the month's end (for the current month: now). An approximation, as
   * no status history is kept: subscriptions created before the end and not cancelled by then,
   * leaving out the ones still pending today. A subscription suspended at the time counts, and one
   * that was pending then but paid later counts from its creation. For the current month it equals
   * today's active + suspended.
   */
  activeAtMonthEnd: number;
}

/** The last `months` calendar months up to the one holding `now`, oldest first, one row each. */
export async function monthlyRevenue(
  db: Executor,
  options: { months: number; timezone: string; now: Date },
): Promise<MonthFigures[]> {
  const months = Math.trunc(options.months);
  if (!(months >= 1 && months <= 120)) throw new RangeError("months must be between 1 and 120");
  const tz = options.timezone;
  const local = sql`(${options.now.toISOString()}::timestamptz at time zone ${tz})`;
  const rows = await queryRows<Record<string, unknown>>(
    db,
    sql`
    with bounds as (
      select m as local_month, m at time zone ${tz} as start_at, (m + interval '1 month') at time zone ${tz} as end_at
      from generate_series(date_trunc('month', ${local}) - make_interval(months => ${months - 1}::int),
                           date_trunc('month', ${local}), interval '1 month') as m
    ),
    span as (select min(start_at) as first_at, max(end_at) as last_at from bounds),
    paid as (
      select date_trunc('month', p.received_at at time zone ${tz}) as local_month, sum(p.amount_cents) as cents
      from payments p, span
      where p.status = 'applied' and p.method <> 'adjustment'
        and p.received_at >= span.first_at and p.received_at < span.last_at
      group by 1
    ),
    created as (
      select date_trunc('month', s.created_at at time zone ${tz}) as local_month, count(*) as n,
        count(*) filter (where s.status <> 'pending') as booked
      from subscriptions s, span
      where s.created_at >= span.first_at and s.created_at < span.last_at
      group by 1
    ),
    cancelled as (
      select date_trunc('month', s.cancelled_at at time zone ${tz}) as local_month, count(*) as n
      from subscriptions s, span
      where s.cancelled_at >= span.first_at and s.cancelled_at < span.last_at
      group by 1
    ),
    base as (
      select (count(*) filter (where s.created_at < span.first_at and s.status <> 'pending'))
           - (count(*) filter (where s.cancelled_at < span.first_at)) as n
      from subscriptions s, span
    )
    select to_char(b.local_month, 'YYYY-MM') as month,
      coalesce(paid.cents, 0)::bigint as collected,
      coalesce(created.n, 0)::int as new_subscribers,
      ((select n from base) + sum(coalesce(created.booked, 0) - coalesce(cancelled.n, 0))
        over (order by b.local_month))::int as active_at_end
    from bounds b
    left join paid on paid.local_month = b.local_month
    left join created on created.local_month = b.local_month
    left join cancelled on cancelled.local_month = b.local_month
    order by b.local_month`,
  );
  return rows.map((r) => ({
    month: String(r.month),
    collectedCents: int(r.collected),
    newSubscribers: int(r.new_subscribers),
    activeAtMonthEnd: int(r.active_at_end),
  }));
}
