import { eq, getTableColumns, sql } from "drizzle-orm";
import type { Executor } from "../db/client.ts";
import { builtOncePerHandle } from "../db/prepared.ts";
import { customers, plans, subscriptions } from "../db/schema/index.ts";

export type Customer = typeof customers.$inferSelect;
export type Subscription = typeof subscriptions.$inferSelect;
export type Plan = typeof plans.$inferSelect;

/** A plan's name as a subscriber reads it: `name_sw` in Kiswahili when there is one, else `name`. */
export function planNameIn(plan: { name: string; nameSw?: string | null }, language: "en" | "sw"): string {
  const sw = plan.nameSw?.trim();
  return language === "sw" && sw ? sw : plan.name;
}

export async function findCustomerByPhone(db: Executor, phone: string): Promise<Customer | null> {
  const [row] = await db.select().from(customers).where(eq(customers.phone, phone)).limit(1);
  return row ?? null;
}

/** What a payer types as the paybill account: trimmed, any case, an optional leading `#`. */
/** What an account number may be: our own `TD00001`, or an ISP's own numbers brought by an import. */
export const ACCOUNT_NUMBER = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;

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

/**
 * The subscription as a summary shows it: without the PPPoE password, which is sealed at rest and
 * would be opened on every "my account" screen for nothing (credentials are sent by their own use-case).
 */
export type SubscriptionSummary = Omit<Subscription, "networkPassword">;

// Every column but the sealed password.
const { networkPassword: _sealedPassword, ...subscriptionSummaryColumns } = getTableColumns(subscriptions);

export interface AccountSummary {
  customer: Customer;
  subscription: SubscriptionSummary | null;
  plan: Plan | null;
  /** Ledger balance: positive is credit, negative is owed. */
  balanceCents: number;
  /** What the customer owes now (0 when in credit). */
  amountDueCents: number;
  /** When the oldest open invoice falls due, if any. */
  nextDueAt: Date | null;
  /** What the next renewal will cost after existing credit (0 when credit covers it). */
  nextChargeCents: number;
  /** When the paid service ends; null until the first payment (a pending subscription has paid for nothing yet). */
  periodEnd: Date | null;
  lastPayment: { amountCents: number; receivedAt: Date; method: string } | null;
}

const epochMs = (value: unknown): Date | null =>
  value === null || value === undefined ? null : new Date(Number(value));

const accountSummaryQuery = builtOncePerHandle((db) =>
  db
    .select({
      customer: customers,
      subscription: subscriptionSummaryColumns,
      plan: plans,
      balance: sql<string>`(select coalesce(sum(l.amount_cents), 0)::text from ledger_entries l where l.customer_id = ${customers.id})`,
      nextDueAt: sql<
        string | null
      >`(select (extract(epoch from min(i.due_at)) * 1000)::bigint::text from invoices i
        where i.customer_id = ${customers.id} and i.status = 'open')`,
      lastPayment: sql<string | null>`(select json_build_object('amountCents', p.amount_cents::text,
          'receivedAt', (extract(epoch from p.received_at) * 1000)::bigint::text, 'method', p.method)::text
        from payments p where p.customer_id = ${customers.id} and p.status = 'applied'
        order by p.received_at desc, p.id desc limit 1)`,
    })
    .from(customers)
    .leftJoin(
      subscriptions,
      eq(
        subscriptions.id,
        sql`(select max(s.id) from subscriptions s where s.customer_id = ${customers.id} and s.status <> 'cancelled')`,
      ),
    )
    .leftJoin(plans, eq(plans.id, subscriptions.planId))
    .where(eq(customers.id, sql.placeholder("customerId")))
    .prepare("account_summary"),
);

/**
 * Everything a subscriber asks about their account, in one statement: it backs the USSD and chat
 * "my account" screens, which must answer within a few milliseconds under load.
 */
export async function getAccountSummary(
  db: Executor,
  customerId: number,
  _now: Date,
): Promise<AccountSummary> {
  const [row] = await accountSummaryQuery(db).execute({ customerId });
  if (!row) throw new Error(`customer ${customerId} not found`);
  const balanceCents = Number(row.balance);
  const amountDueCents = Math.max(0, -balanceCents);
  const last = row.lastPayment
    ? (JSON.parse(row.lastPayment) as { amountCents: string; receivedAt: string; method: string })
    : null;
  return {
    customer: row.customer,
    subscription: row.subscription,
    plan: row.plan,
    balanceCents,
    amountDueCents,
    nextDueAt: epochMs(row.nextDueAt),
    nextChargeCents:
      amountDueCents > 0 ? amountDueCents : Math.max(0, (row.plan?.priceCents ?? 0) - balanceCents),
    periodEnd:
      row.subscription && row.subscription.status !== "pending" ? row.subscription.currentPeriodEnd : null,
    lastPayment: last
      ? {
          amountCents: Number(last.amountCents),
          receivedAt: new Date(Number(last.receivedAt)),
          method: last.method,
        }
      : null,
  };
}
