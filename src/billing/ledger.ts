import { eq, type SQL, sql } from "drizzle-orm";
import { type Executor, queryRows } from "../db/client.ts";
import { ledgerEntries } from "../db/schema/index.ts";
import { restartDunningInTx } from "./dunning.ts";
import { assertCovers, type MoneyLock } from "./money-lock.ts";

/** A customer's balance: the sum of their ledger entries (positive = credit, negative = owed). */
export async function balanceOf(tx: Executor, customerId: number): Promise<number> {
  const [row] = await tx
    .select({ balance: sql<string>`coalesce(sum(${ledgerEntries.amountCents}), 0)` })
    .from(ledgerEntries)
    .where(eq(ledgerEntries.customerId, customerId));
  return Number(row?.balance ?? 0);
}

/** Writes one entry; the caller holds the customer's money lock (see money-lock.ts). */
export async function postLedgerEntry(
  tx: Executor,
  lock: MoneyLock,
  entry: {
    customerId: number;
    kind: "invoice" | "payment" | "credit" | "adjustment";
    amountCents: number;
    invoiceId?: number | null;
    paymentId?: number | null;
    memo: string;
    at: Date;
  },
): Promise<void> {
  assertCovers(lock, entry.customerId);
  await tx.insert(ledgerEntries).values({
    customerId: entry.customerId,
    kind: entry.kind,
    amountCents: entry.amountCents,
    invoiceId: entry.invoiceId ?? null,
    paymentId: entry.paymentId ?? null,
    memo: entry.memo,
    createdAt: entry.at,
  });
}

export interface SettledInvoice {
  id: number;
  customerId: number;
  subscriptionId: number | null;
  kind: string;
  status: "open" | "paid";
}

/**
 * Allocates each customer's available credit to their unpaid invoices, and spreads what their bills
 * of service hold between them again, oldest due first. Bills of service (periods, plan changes:
 * those dunning enforces) not settled for good are the open ones and the paid ones not due yet (a
 * next period's, issued ahead): credit is allocated as it comes, so a plan change's charge, due now,
 * would otherwise wait unpaid, and overdue, while the next period's bill held the money.
 * Corrections (`manual`, from `/adjust`), which never suspend anyone, keep what they hold and take
 * only credit the bills of service leave over. What is available is what the open invoices show as
 * outstanding minus what the ledger says is really owed, so allocations always agree with the
 * ledger; when the ledger owes more than those bills can show (a credit taken back after it was
 * spent), bills already due and paid are owed again for the difference, and open. Set-based:
 * `customerIds` is a subquery, so one statement settles one customer or a hundred thousand. The
 * caller holds the money lock of every customer it names (see money-lock.ts): the allocation is
 * computed from this statement's snapshot, which is only the truth while no other writer can change
 * these customers. Returns the invoices whose allocation changed, and those paid in full.
 */
export async function settleOpenInvoices(
  tx: Executor,
  _lock: MoneyLock,
  now: Date,
  customerIds: SQL,
): Promise<SettledInvoice[]> {
  const at = sql`${now.toISOString()}::timestamptz`;
  const rows = await queryRows<{
    id: number;
    customer_id: number;
    subscription_id: number | null;
    kind: string;
    status: "open" | "paid";
    reopened: boolean;
  }>(
    tx,
    sql`
    with targets as (select distinct c.id as customer_id from (${customerIds}) as c(id)),
    -- Bills of service not settled for good: open, or paid but not due yet. Their money is spread.
    service as (
      select i.id, i.customer_id, i.amount_cents, i.paid_cents,
        coalesce(sum(i.amount_cents) over (
          partition by i.customer_id order by i.due_at, i.id
          rows between unbounded preceding and 1 preceding), 0) as before
      from (
        select i.id, i.customer_id, i.amount_cents, i.paid_cents, i.due_at
        from invoices i join targets t on t.customer_id = i.customer_id
        where i.status = 'open' and i.kind <> 'manual'
        union all
        select i.id, i.customer_id, i.amount_cents, i.paid_cents, i.due_at
        from invoices i join targets t on t.customer_id = i.customer_id
        where i.status = 'paid' and i.due_at > ${at} and i.kind <> 'manual'
      ) i
    ),
    -- Corrections still open: they keep what they hold and take only what service leaves over.
    corrections as (
      select i.id, i.customer_id, i.amount_cents, i.paid_cents,
        coalesce(sum(i.amount_cents - i.paid_cents) over (
          partition by i.customer_id order by i.due_at, i.id
          rows between unbounded preceding and 1 preceding), 0) as before
      from invoices i join targets t on t.customer_id = i.customer_id
      where i.status = 'open' and i.kind = 'manual'
    ),
    -- Every customer named, with or without such bills: one whose bills are all settled for good
    -- can still owe (see shortfall).
    owed as (
      select t.customer_id, coalesce(sum(x.outstanding), 0) as outstanding, coalesce(sum(x.held), 0) as held,
        coalesce(sum(x.service), 0) as service
      from targets t left join (
        select customer_id, amount_cents - paid_cents as outstanding, paid_cents as held, amount_cents as service
        from service
        union all
        select customer_id, amount_cents - paid_cents, 0, 0 from corrections
      ) x on x.customer_id = t.customer_id
      group by t.customer_id
    ),
    balances as (
      select l.customer_id, sum(l.amount_cents) as balance
      from ledger_entries l join owed o on o.customer_id = l.customer_id group by l.customer_id
    ),
    -- What service bills share: what they hold plus the credit free to spend (what the open bills
    -- show as outstanding beyond what the ledger says is owed); corrections get what is left over.
    -- Negative when the ledger owes more than that (a credit taken back after it paid a bill, by a
    -- cancellation): what they hold no longer exists, and the shortfall is owed on bills paid already.
    funds as (
      select f.customer_id, greatest(0, f.pool) as pool, greatest(0, f.pool - f.service) as leftover,
        greatest(0, -f.pool) as shortfall
      from (
        select o.customer_id, o.service,
          o.held + o.outstanding - greatest(0, -coalesce(b.balance, 0)) as pool
        from owed o left join balances b on b.customer_id = o.customer_id
      ) f
    ),
    -- The shortfall is taken back from bills already due that are paid, latest due first, as the
    -- money they held would have paid the oldest first; bills of service before corrections, which
    -- are the last paid. Owed again, they are open: dunning, reminders and "amount due" see them.
    -- (Lateral: the paid bills of only the customers short, almost always none, are read.)
    reopening as (
      select i.id, i.amount_cents, i.paid_cents, f.shortfall, i.after
      from funds f
      cross join lateral (
        select p.id, p.amount_cents, p.paid_cents,
          coalesce(sum(p.paid_cents) over (
            order by p.kind = 'manual', p.due_at desc, p.id desc
            rows between unbounded preceding and 1 preceding), 0) as after
        from invoices p
        where p.customer_id = f.customer_id and p.status = 'paid' and p.due_at <= ${at}
      ) i
      where f.shortfall > 0
    ),
    allocation as (
      select s.id, s.amount_cents, least(s.amount_cents, greatest(0, f.pool - s.before)) as paid,
        false as reopened
      from service s join funds f on f.customer_id = s.customer_id
      union all
      select c.id, c.amount_cents,
        c.paid_cents + least(c.amount_cents - c.paid_cents, greatest(0, f.leftover - c.before)) as paid,
        false
      from corrections c join funds f on f.customer_id = c.customer_id
      union all
      select r.id, r.amount_cents, r.paid_cents - least(r.paid_cents, greatest(0, r.shortfall - r.after)),
        true
      from reopening r
    )
    update invoices i set
      paid_cents = a.paid,
      status = case when a.paid = a.amount_cents then 'paid' else 'open' end,
      paid_at = case when a.paid = a.amount_cents then coalesce(i.paid_at, ${at}) else null end
    from allocation a
    where a.id = i.id and (a.paid <> i.paid_cents or (a.paid = a.amount_cents and i.status = 'open'))
    returning i.id, i.customer_id, i.subscription_id, i.kind, i.status, a.reopened`,
  );
  // A bill owed again starts its dunning over: it is reminded about again, a grace period runs from
  // now (nobody is cut off for a bill they were not told about), and a suspension it caused before
  // it was paid no longer keeps it from suspending again.
  const reopened = rows.filter((r) => r.reopened).map((r) => Number(r.id));
  await restartDunningInTx(tx, reopened, { owedAgain: now });
  return rows.map((r) => ({
    id: Number(r.id),
    customerId: Number(r.customer_id),
    subscriptionId: r.subscription_id === null ? null : Number(r.subscription_id),
    kind: r.kind,
    status: r.status,
  }));
}

export const oneCustomer = (customerId: number): SQL => sql`select ${customerId}::int`;

/** Open invoices whose due date has passed: the customer is in arrears. */
export async function hasOverdueInvoices(tx: Executor, customerId: number, now: Date): Promise<boolean> {
  const rows = await queryRows<{ n: number }>(
    tx,
    sql`select count(*)::int as n from invoices
        where customer_id = ${customerId} and status = 'open' and due_at <= ${now.toISOString()}::timestamptz`,
  );
  return Number(rows[0]?.n ?? 0) > 0;
}
