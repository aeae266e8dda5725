import { and, desc, eq, ne, sql } from "drizzle-orm";
import type { Executor } from "../db/client.ts";
import { customers, invoices, payments, plans, subscriptions } from "../db/schema/index.ts";
import { balanceOf } from "./ledger.ts";

export type Customer = typeof customers.$inferSelect;
export type Subscription = typeof subscriptions.$inferSelect;
export type Plan = typeof plans.$inferSelect;

export async function findCustomerByPhone(db: Executor, phone: string): Promise<Customer | null> {
  const [row] = await db.select().from(customers).where(eq(customers.phone, phone)).limit(1);
  return row ?? null;
}

/** What a payer types as the paybill account: trimmed, any case, an optional leading `#`. */
export function normaliseAccountReference(reference: string): string {
  return reference.replace(/\s+/g, "").replace(/^#+/, "").toUpperCase();
}

export async function findCustomerByAccountReference(
  db: Executor,
  reference: string,
): Promise<Customer | null> {
  const normalised = normaliseAccountReference(reference);
  if (!normalised) return null;
  const [row] = await db
    .select()
    .from(customers)
    .where(sql`upper(${customers.accountNumber}) = ${normalised}`)
    .limit(1);
  return row ?? null;
}

/** The customer's live subscription (the newest one that is not cancelled). */
export async function currentSubscription(
  db: Executor,
  customerId: number,
): Promise<{ subscription: Subscription; plan: Plan } | null> {
  const [row] = await db
    .select({ subscription: subscriptions, plan: plans })
    .from(subscriptions)
    .innerJoin(plans, eq(plans.id, subscriptions.planId))
    .where(and(eq(subscriptions.customerId, customerId), ne(subscriptions.status, "cancelled")))
    .orderBy(desc(subscriptions.id))
    .limit(1);
  return row ?? null;
}

export interface AccountSummary {
  customer: Customer;
  subscription: Subscription | null;
  plan: Plan | null;
  /** Ledger balance: positive is credit, negative is owed. */
  balanceCents: number;
  /** What the customer owes now (0 when in credit). */
  amountDueCents: number;
  /** When the oldest open invoice falls due, if any. */
  nextDueAt: Date | null;
  /** What the next renewal will cost after existing credit (0 when credit covers it). */
  nextChargeCents: number;
  periodEnd: Date | null;
  lastPayment: { amountCents: number; receivedAt: Date; method: string } | null;
}

export async function getAccountSummary(
  db: Executor,
  customerId: number,
  _now: Date,
): Promise<AccountSummary> {
  const [customer] = await db.select().from(customers).where(eq(customers.id, customerId));
  if (!customer) throw new Error(`customer ${customerId} not found`);
  const current = await currentSubscription(db, customerId);
  const balanceCents = await balanceOf(db, customerId);
  const [oldestOpen] = await db
    .select({ dueAt: invoices.dueAt })
    .from(invoices)
    .where(and(eq(invoices.customerId, customerId), eq(invoices.status, "open")))
    .orderBy(invoices.dueAt)
    .limit(1);
  const [lastPayment] = await db
    .select({ amountCents: payments.amountCents, receivedAt: payments.receivedAt, method: payments.method })
    .from(payments)
    .where(and(eq(payments.customerId, customerId), eq(payments.status, "applied")))
    .orderBy(desc(payments.receivedAt), desc(payments.id))
    .limit(1);
  const amountDueCents = Math.max(0, -balanceCents);
  const renewalPlanPrice = current ? current.plan.priceCents : 0;
  return {
    customer,
    subscription: current?.subscription ?? null,
    plan: current?.plan ?? null,
    balanceCents,
    amountDueCents,
    nextDueAt: oldestOpen?.dueAt ?? null,
    nextChargeCents: amountDueCents > 0 ? amountDueCents : Math.max(0, renewalPlanPrice - balanceCents),
    periodEnd: current?.subscription.currentPeriodEnd ?? null,
    lastPayment: lastPayment ?? null,
  };
}
