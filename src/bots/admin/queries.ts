import { and, desc, eq, ilike, inArray, ne, or, sql } from "drizzle-orm";
import {
  type AccountSummary,
  findCustomerByAccountReference,
  getAccountSummary,
} from "../../billing/accounts.ts";
import type { Executor } from "../../db/client.ts";
import {
  customers,
  invoices,
  payments,
  provisioningOutbox,
  routers,
  subscriptions,
} from "../../db/schema/index.ts";
import { normalizePhone } from "../../lib/phone.ts";

/**
 * What the admin chat reads. No rule lives here: balances, plans and periods come from the billing
 * core's account summary; the rest are plain reads for display.
 */

export const FIND_LIMIT = 10;

/** Customers a phone, an account number or part of a name points at (at most `FIND_LIMIT`). */
export async function findCustomers(db: Executor, query: string, now: Date): Promise<AccountSummary[]> {
  const ids = new Set<number>();
  const phone = /^[+\d][\d\s-]{5,}$/.test(query.trim()) ? normalizePhone(query) : null;
  if (phone) {
    const rows = await db.select({ id: customers.id }).from(customers).where(eq(customers.phone, phone));
    for (const row of rows) ids.add(row.id);
  }
  const byAccount = await findCustomerByAccountReference(db, query);
  if (byAccount) ids.add(byAccount.id);
  const name = query.trim();
  if (ids.size < FIND_LIMIT && name.length >= 2) {
    const pattern = `%${name.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    const rows = await db
      .select({ id: customers.id })
      .from(customers)
      .where(or(ilike(customers.name, pattern), ilike(customers.accountNumber, pattern)))
      .orderBy(customers.name, customers.id)
      .limit(FIND_LIMIT);
    for (const row of rows) ids.add(row.id);
  }
  const found: AccountSummary[] = [];
  for (const id of [...ids].slice(0, FIND_LIMIT)) found.push(await getAccountSummary(db, id, now));
  return found;
}

/** The subscription an admin means by an account: its newest one that is not cancelled. */
export async function currentSubscription(db: Executor, customerId: number) {
  const [row] = await db
    .select()
    .from(subscriptions)
    .where(and(eq(subscriptions.customerId, customerId), ne(subscriptions.status, "cancelled")))
    .orderBy(desc(subscriptions.id))
    .limit(1);
  return row ?? null;
}

export interface SubscriberCard {
  summary: AccountSummary;
  routerName: string | null;
  lastPayments: { providerRef: string; method: string; amountCents: number; receivedAt: Date }[];
  openInvoices: { id: number; amountCents: number; paidCents: number; dueAt: Date }[];
  lastProvisioning: {
    action: string;
    status: string;
    lastError: string | null;
    createdAt: Date;
    doneAt: Date | null;
  } | null;
}

export async function subscriberCard(db: Executor, customerId: number, now: Date): Promise<SubscriberCard> {
  const summary = await getAccountSummary(db, customerId, now);
  const subscription = summary.subscription;
  const [router] = subscription?.routerId
    ? await db.select({ name: routers.name }).from(routers).where(eq(routers.id, subscription.routerId))
    : [];
  const lastPayments = await db
    .select({
      providerRef: payments.providerRef,
      method: payments.method,
      amountCents: payments.amountCents,
      receivedAt: payments.receivedAt,
    })
    .from(payments)
    .where(and(eq(payments.customerId, customerId), eq(payments.status, "applied")))
    .orderBy(desc(payments.receivedAt), desc(payments.id))
    .limit(3);
  const openInvoices = await db
    .select({
      id: invoices.id,
      amountCents: invoices.amountCents,
      paidCents: invoices.paidCents,
      dueAt: invoices.dueAt,
    })
    .from(invoices)
    .where(and(eq(invoices.customerId, customerId), eq(invoices.status, "open")))
    .orderBy(invoices.dueAt, invoices.id);
  const [lastProvisioning] = subscription
    ? await db
        .select({
          action: provisioningOutbox.action,
          status: provisioningOutbox.status,
          lastError: provisioningOutbox.lastError,
          createdAt: provisioningOutbox.createdAt,
          doneAt: provisioningOutbox.doneAt,
        })
        .from(provisioningOutbox)
        .where(eq(provisioningOutbox.subscriptionId, subscription.id))
        .orderBy(desc(provisioningOutbox.id))
        .limit(1)
    : [];
  return {
    summary,
    routerName: router?.name ?? null,
    lastPayments,
    openInvoices,
    lastProvisioning: lastProvisioning ?? null,
  };
}

/** Unmatched payments whose receipt is `receipt` (case as typed, or upper case as M-Pesa prints it). */
export async function unmatchedByReceipt(db: Executor, receipt: string) {
  const ref = receipt.trim();
  return db
    .select()
    .from(payments)
    .where(
      and(
        eq(payments.status, "unmatched"),
        inArray(payments.providerRef, [...new Set([ref, ref.toUpperCase()])]),
      ),
    );
}

/** Any payment by receipt, to say why it cannot be assigned. */
export async function paymentByReceipt(db: Executor, receipt: string) {
  const ref = receipt.trim();
  const [row] = await db
    .select({ status: payments.status, customerId: payments.customerId })
    .from(payments)
    .where(sql`upper(${payments.providerRef}) = ${ref.toUpperCase()}`)
    .limit(1);
  return row ?? null;
}
