import { type SQL, sql } from "drizzle-orm";
import { type Executor, queryRows } from "../db/client.ts";
import type { Actor, BillingContext } from "./context.ts";
import { settleOpenInvoices } from "./ledger.ts";
import { lockCustomerSet } from "./money-lock.ts";
import { periodBoundarySql } from "./period-sql.ts";

export interface InvoiceRunCounts {
  [key: string]: number;
  rolled: number;
  issued: number;
  settled: number;
}

/**
 * A scheduled change (`s.next_plan_id`, plan `np`) to a plan of another period length than the
 * current one (`p`): its periods count from the current period's end. One of the same length keeps
 * the billing anchor, so that a period clamped to a short month (31 Jan → 28 Feb) does not move the
 * billing day for good (28 Feb → 28 Mar instead of 31 Mar). As immediate changes do (plan-change.ts).
 */
const recountsSql = sql`(s.next_plan_id is not null
  and (np.period_unit <> p.period_unit or np.period_count <> p.period_count))`;

/**
 * Moves active subscriptions into their next period once it is paid for (prepaid: pay, then serve).
 * A scheduled plan change takes effect here; to a plan of another period length it restarts the
 * period count from this boundary (recountsSql). An unpaid period is left to dunning.
 */
async function rollPaidPeriods(tx: Executor, ctx: BillingContext, now: Date, locked: SQL): Promise<number> {
  const tz = ctx.settings.timezone;
  const at = sql`${now.toISOString()}::timestamptz`;
  const rows = await queryRows<{ n: number }>(
    tx,
    sql`
    with due as (
      select s.id, s.router_id, s.next_plan_id is not null as plan_changes,
        coalesce(s.next_plan_id, s.plan_id) as plan_id,
        case when ${recountsSql} then s.current_period_end else s.billing_anchor end as anchor,
        case when ${recountsSql} then 0 else s.period_index + 1 end as period_index,
        np.period_unit, np.period_count, s.current_period_end as period_start
      from subscriptions s
      join plans p on p.id = s.plan_id
      join plans np on np.id = coalesce(s.next_plan_id, s.plan_id)
      where s.status = 'active' and s.current_period_end <= ${at} and s.customer_id in (${locked})
        and exists (select 1 from invoices i where i.subscription_id = s.id and i.kind = 'recurring'
                    and i.period_start = s.current_period_end and i.status = 'paid')
      for update of s
    ),
    rolled as (
      update subscriptions s set
        plan_id = d.plan_id, next_plan_id = null, billing_anchor = d.anchor, period_index = d.period_index,
        current_period_start = d.period_start,
        period_price_cents = s.next_period_price_cents, next_period_price_cents = null,
        current_period_end = ${periodBoundarySql(sql`d.anchor`, sql`d.period_unit`, sql`d.period_count`, sql`d.period_index + 1`, tz)}
      from due d where d.id = s.id
      returning s.id
    ),
    reprovisioned as (
      insert into provisioning_outbox (router_id, subscription_id, action, payload, next_attempt_at, created_at)
      select d.router_id, d.id, 'change_plan', '{}'::jsonb, ${at}, ${at} from due d where d.plan_changes
    )
    select count(*)::int as n from rolled`,
  );
  return Number(rows[0]?.n ?? 0);
}

/**
 * A subscription (`s`) suspended for non-payment whose next period has no bill yet: one cut off
 * for an unpaid plan-change charge before its renewal was issued. It gets that bill too, since
 * paying it is what brings service back (restore.ts); one suspended for its renewal has it already.
 */
const awaitingBillWhileSuspended = sql`s.status = 'suspended' and s.suspended_reason = 'dunning'
  and not exists (select 1 from invoices i where i.subscription_id = s.id and i.kind = 'recurring'
                  and i.period_start = s.current_period_end)`;

/**
 * Issues the invoice of every active subscription's next period once it starts within the lead
 * time, set-based: one statement for any number of subscriptions. The unique (subscription,
 * period start) index makes a rerun, or a run racing another, create nothing new.
 */
async function issueNextPeriodInvoices(
  tx: Executor,
  ctx: BillingContext,
  now: Date,
  locked: SQL,
): Promise<number> {
  const tz = ctx.settings.timezone;
  const at = sql`${now.toISOString()}::timestamptz`;
  const horizon = sql`${new Date(now.getTime() + ctx.settings.invoiceLeadHours * 3_600_000).toISOString()}::timestamptz`;
  const rows = await queryRows<{ n: number }>(
    tx,
    sql`
    with due as (
      select s.id as subscription_id, s.customer_id, np.name as plan_name, np.price_cents,
        s.current_period_end as period_start,
        case when ${recountsSql}
          then ${periodBoundarySql(sql`s.current_period_end`, sql`np.period_unit`, sql`np.period_count`, sql`1`, tz)}
          else ${periodBoundarySql(sql`s.billing_anchor`, sql`p.period_unit`, sql`p.period_count`, sql`s.period_index + 2`, tz)}
        end as period_end
      from subscriptions s
      join plans p on p.id = s.plan_id
      join plans np on np.id = coalesce(s.next_plan_id, s.plan_id)
      where (s.status = 'active' or (${awaitingBillWhileSuspended}))
        and s.current_period_end <= ${horizon} and s.customer_id in (${locked})
    ),
    issued as (
      insert into invoices (customer_id, subscription_id, kind, period_start, period_end, amount_cents, due_at, issued_at)
      select customer_id, subscription_id, 'recurring', period_start, period_end, price_cents, period_start, ${at}
      from due
      on conflict (subscription_id, period_start) where kind = 'recurring' do nothing
      returning id, customer_id, subscription_id, amount_cents
    ),
    -- The price the next period is billed at, kept for a plan change in it (plan-change-quote.ts).
    priced as (
      update subscriptions s set next_period_price_cents = i.amount_cents
      from issued i where s.id = i.subscription_id
    ),
    lines as (
      insert into invoice_lines (invoice_id, description, amount_cents)
      select i.id, d.plan_name, i.amount_cents from issued i join due d on d.subscription_id = i.subscription_id
    ),
    charged as (
      insert into ledger_entries (customer_id, kind, amount_cents, invoice_id, memo, created_at)
      select i.customer_id, 'invoice', -i.amount_cents, i.id, 'Renewal: ' || d.plan_name, ${at}
      from issued i join due d on d.subscription_id = i.subscription_id
    )
    select count(*)::int as n from issued`,
  );
  return Number(rows[0]?.n ?? 0);
}

/** From this many customers on, a run tunes its transaction for a large set (see below). */
const LARGE_RUN = 50_000;

/**
 * The customers just invoiced whom settling can pay anything for: open invoices outstanding plus the
 * ledger balance above zero (credit left over), or an open invoice already paid in full (a free plan).
 * The same test `settleOpenInvoices` applies per customer, done first as two grouped scans, so that
 * its per-invoice allocation runs for the few with credit instead of every customer of the run.
 * Only the run's own customers (`locked`): another writer's invoice issued at the same instant (a
 * sign-up) belongs to a customer this run holds no lock on.
 */
function customersWithCreditToSpend(now: Date, locked: SQL): SQL {
  return sql`
    with invoiced as (
      select distinct customer_id from invoices
      where kind = 'recurring' and issued_at = ${now.toISOString()}::timestamptz and status = 'open'
    ),
    owed as (
      select i.customer_id, sum(i.amount_cents - i.paid_cents) as outstanding,
        bool_or(i.paid_cents = i.amount_cents) as paid_in_full
      from invoices i where i.status = 'open' and i.customer_id in (select customer_id from invoiced)
      group by i.customer_id
    ),
    balances as (
      select l.customer_id, sum(l.amount_cents) as balance from ledger_entries l
      where l.customer_id in (select customer_id from owed) group by l.customer_id
    )
    select o.customer_id from owed o left join balances b on b.customer_id = o.customer_id
    where (o.paid_in_full or o.outstanding + coalesce(b.balance, 0) > 0)
      and o.customer_id in (${locked})`;
}

/**
 * The invoice run: roll paid periods, issue the next invoices, and let existing credit pay them.
 * Repeats (bounded) so that a scheduler that was down for several periods catches up.
 *
 * It writes money, so it follows the one-writer rule (money-lock.ts): it first locks every customer
 * it may touch, ascending id, before rolling (which locks subscriptions); a payment that committed
 * meanwhile is then seen by the settlement, and one that arrives later waits for this run and
 * settles against the new invoices itself. Every round keeps to the customers locked then: one
 * whose subscription became due meanwhile (another writer activated it) waits for the next run.
 */
export async function issueRecurringInvoicesInTx(
  tx: Executor,
  ctx: BillingContext,
  _actor: Actor,
): Promise<InvoiceRunCounts> {
  const now = ctx.clock.now();
  const counts: InvoiceRunCounts = { rolled: 0, issued: 0, settled: 0 };
  const horizon = new Date(now.getTime() + ctx.settings.invoiceLeadHours * 3_600_000).toISOString();
  const { lock, members, count } = await lockCustomerSet(
    tx,
    sql`select customer_id from subscriptions s where current_period_end <= ${horizon}::timestamptz
          and (status = 'active' or (${awaitingBillWhileSuspended}))`,
  );
  if (count === 0) return counts;
  const large = count >= LARGE_RUN;
  // Sorts and hashes over a run this size stay in memory instead of spilling to disk.
  if (large) await tx.execute(sql`set local work_mem = '64MB'`);
  for (let round = 0; round < 24; round++) {
    const rolled = await rollPaidPeriods(tx, ctx, now, members);
    const issued = await issueNextPeriodInvoices(tx, ctx, now, members);
    let settled = 0;
    // The rows just written are a large part of these tables, and the statistics know nothing of
    // them: without fresh ones the planner takes the new invoices for a handful, and settles a
    // million customers one index probe at a time.
    if (issued >= LARGE_RUN) await tx.execute(sql`analyze invoices, ledger_entries`);
    if (issued > 0) {
      const changed = await settleOpenInvoices(tx, lock, now, customersWithCreditToSpend(now, members));
      settled = changed.filter((i) => i.status === "paid").length;
    }
    counts.rolled += rolled;
    counts.issued += issued;
    counts.settled += settled;
    if (rolled === 0 && settled === 0) break;
  }
  return counts;
}

export function issueRecurringInvoices(ctx: BillingContext, actor: Actor): Promise<InvoiceRunCounts> {
  return ctx.db.transaction((tx) => issueRecurringInvoicesInTx(tx, ctx, actor));
}
