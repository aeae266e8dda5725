import { eq, type SQL, sql } from "drizzle-orm";
import { type Executor, queryRows } from "../db/client.ts";
import { intArray } from "../db/params.ts";
import { customers, plans, subscriptions } from "../db/schema/index.ts";
import { BillingError } from "./context.ts";

/**
 * THE ONE-WRITER RULE for a customer's money.
 *
 * Every use-case that writes a customer's ledger entries or invoice allocations (payments of every
 * kind, assigning an unmatched payment, the invoice run, plan changes, cancellations, admin credits
 * and cash) first locks that customer's row with `lockCustomerMoney` (or `lockCustomerSet`
 * for a set), in the same transaction, before it reads anything it will base the write on
 * (balance, open invoices, the subscription). Order, everywhere:
 *
 *   payment intent rows → customer rows (ascending id) → subscriptions → invoices
 *
 * A writer holding the lock runs alone for that customer; every statement it runs after taking the
 * lock (READ COMMITTED: a fresh snapshot per statement) sees whatever the previous holder
 * committed, so allocations computed by `settleOpenInvoices` are never stale. `postLedgerEntry` and
 * `settleOpenInvoices` demand a `MoneyLock`, so a new writer cannot forget the rule; a lock that
 * only some writers took would protect nothing.
 *
 * Row locks (not advisory locks) because the invoice run locks a hundred thousand customers in one
 * transaction: row locks live in the rows, advisory locks in a bounded shared table. `for no key
 * update`, not `for update`: it excludes every other money writer, but not the key-share locks
 * that inserts referencing the customer take (a payment prompt being recorded, say), which would
 * otherwise wait for the whole invoice run.
 */
export interface MoneyLock {
  /** Whether this lock covers the customer: always true for a lock taken over a set. */
  covers(customerId: number): boolean;
}

class CustomerLock implements MoneyLock {
  constructor(private readonly ids: ReadonlySet<number> | "set") {}
  covers(customerId: number): boolean {
    return this.ids === "set" || this.ids.has(customerId);
  }
}

/** Locks the customers' money, ascending id (so writers over overlapping sets queue instead of deadlocking). */
export async function lockCustomerMoney(tx: Executor, customerIds: Iterable<number>): Promise<MoneyLock> {
  const ids = [...new Set(customerIds)].sort((a, b) => a - b);
  if (ids.length === 1) {
    await tx.execute(sql`select id from customers where id = ${ids[0]}::int for no key update`);
  } else if (ids.length > 1) {
    await tx.execute(
      sql`select id from customers where id = any(${intArray(ids)}) order by id for no key update`,
    );
  }
  return new CustomerLock(new Set(ids));
}

/**
 * Locks the money of every customer `customerIds` (a subquery of ids) selects, ascending id: the
 * set-based form for scheduled jobs. It remembers exactly which customers it locked:
 * `members` selects them, so a job can keep to them (a customer who became eligible after the lock
 * was taken was not locked, and waits for the next run instead of being written unlocked). One set
 * per transaction: a second call replaces the first.
 */
export async function lockCustomerSet(
  tx: Executor,
  customerIds: SQL,
): Promise<{ lock: MoneyLock; members: SQL; count: number }> {
  // No key: the ids are distinct already, and the jobs read the set whole (hashed), not one by one.
  await tx.execute(sql`create temp table if not exists money_locked_customers (id int) on commit drop`);
  await tx.execute(sql`truncate money_locked_customers`);
  const rows = await queryRows<{ n: number }>(
    tx,
    sql`with locked as (
          select c.id from customers c where c.id in (${customerIds}) order by c.id for no key update
        ),
        kept as (insert into money_locked_customers select id from locked returning id)
        select count(*)::int as n from kept`,
  );
  // The planner's row counts for what follows: a new temporary table has no statistics.
  await tx.execute(sql`analyze money_locked_customers`);
  return {
    lock: new CustomerLock("set"),
    members: sql`select id from money_locked_customers`,
    count: Number(rows[0]?.n ?? 0),
  };
}

/**
 * Finds the customer a paybill account reference names and locks their money in the same
 * statement (one round trip on the hot path of every paybill confirmation).
 */
export async function lockCustomerByAccount(
  tx: Executor,
  normalisedReference: string,
): Promise<{ customer: typeof customers.$inferSelect | null; lock: MoneyLock }> {
  const [customer] = await tx
    .select()
    .from(customers)
    .where(sql`upper(${customers.accountNumber}) = ${normalisedReference}`)
    .limit(1)
    .for("no key update");
  return { customer: customer ?? null, lock: new CustomerLock(new Set(customer ? [customer.id] : [])) };
}

/** Locks the money of a subscription's customer (the subscription's owner never changes). */
export async function lockSubscriptionCustomer(tx: Executor, subscriptionId: number): Promise<MoneyLock> {
  const rows = await queryRows<{ id: number }>(
    tx,
    sql`select c.id from customers c
        where c.id = (select s.customer_id from subscriptions s where s.id = ${subscriptionId}::int)
        for no key update of c`,
  );
  return new CustomerLock(new Set(rows.map((r) => Number(r.id))));
}

/** The subscription, locked after its customer's money (the lock order above). */
export async function lockedSubscription(tx: Executor, subscriptionId: number) {
  const money = await lockSubscriptionCustomer(tx, subscriptionId);
  const [row] = await tx
    .select({ subscription: subscriptions, plan: plans, customer: customers })
    .from(subscriptions)
    .innerJoin(plans, eq(plans.id, subscriptions.planId))
    .innerJoin(customers, eq(customers.id, subscriptions.customerId))
    .where(eq(subscriptions.id, subscriptionId))
    .for("update", { of: subscriptions });
  if (!row) throw new BillingError("unknown_subscription", `No subscription ${subscriptionId}.`);
  return { ...row, money };
}

export function assertCovers(lock: MoneyLock, customerId: number): void {
  if (!lock.covers(customerId))
    throw new Error(`customer ${customerId}'s money is written without holding its lock`);
}
