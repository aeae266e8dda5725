import { and, eq, inArray, type SQL, sql } from "drizzle-orm";
import type { Executor } from "../db/client.ts";
import { customers, type Language, payments } from "../db/schema/index.ts";
import { audit } from "./audit.ts";
import type { Actor } from "./context.ts";
import { assertCovers, type MoneyLock } from "./money-lock.ts";
import { enqueueMessage } from "./outbox.ts";
import { type PaymentInput, recordUncreditedPaymentInTx } from "./payment-rows.ts";

/**
 * Accounts money must not be credited to: a self sign-up an admin rejected (customer `inactive`, which
 * only `rejectSignup` sets and `resubscribe` clears). Its only bill was voided and nothing it has
 * could spend a credit, so money paid to it afterwards would sit on a balance nobody reads. It waits
 * in the unmatched queue instead, with the reason, for an admin to give back (or to place, once the
 * account is resubscribed), and the payer is told it was not credited.
 *
 * Whether an account is closed is read under its money lock, the lock a rejection takes too: a
 * payment and a rejection committing together are applied one after the other. Payment first: the
 * rejection finds the service started, or money on the account, and refuses (see `rejectSignup`).
 * Rejection first: the payment finds the account closed and waits in the queue.
 *
 * An admin's cancellation does not close an account: its credit stays for a resubscription and its
 * payments pay what it still owes.
 */

export interface ClosedAccount {
  customerId: number;
  accountNumber: string;
  phone: string;
  language: Language;
  /** Why money for it waits in the unmatched queue: shown to the admin who places it. */
  holdReason: string;
}

const closedReasonTail =
  "'s sign-up was rejected: give the money back, or resubscribe the account and assign it";
const closedAccountReason = (accountNumber: string): string => `account ${accountNumber}${closedReasonTail}`;

/**
 * Whether a payment row (`p`) was held because this customer's account is closed: waiting in the
 * queue for that reason, or given back from there (a refund appends its own reason).
 */
export const heldForClosedAccountSql = (customerId: number): SQL => sql`(p.customer_id is null
  and p.status in ('unmatched', 'refunded')
  and starts_with(p.hold_reason,
    (select 'account ' || c.account_number || ${closedReasonTail}::text from customers c where c.id = ${customerId}::int)))`;

/** What a payment request ends with when its money waits for an admin: what it was for is not done. */
export const closedAccountOutcome = (account: { holdReason: string }): Record<string, unknown> => ({
  followUpError: account.holdReason,
  followUpCode: "account_closed",
});

type CustomerRow = Pick<
  typeof customers.$inferSelect,
  "id" | "accountNumber" | "phone" | "language" | "status"
>;

/**
 * Whether an account is closed to payments, as a screen shows it (no lock: a payment decides again
 * under its money lock).
 */
export const isClosedToPayments = (customer: Pick<CustomerRow, "status">): boolean =>
  customer.status === "inactive";

/** Whether a customer row read with its money lock (`lockCustomerByAccount`) is closed to payments. */
export function closedAccountOfLocked(customer: CustomerRow): ClosedAccount | null {
  if (!isClosedToPayments(customer)) return null;
  return {
    customerId: customer.id,
    accountNumber: customer.accountNumber,
    phone: customer.phone,
    language: customer.language,
    holdReason: closedAccountReason(customer.accountNumber),
  };
}

/** Which of these customers are closed to payments, read under their money lock. */
export async function closedAccountsAmong(
  tx: Executor,
  money: MoneyLock,
  customerIds: readonly number[],
): Promise<Map<number, ClosedAccount>> {
  for (const customerId of customerIds) assertCovers(money, customerId);
  if (customerIds.length === 0) return new Map();
  const rows = await tx
    .select()
    .from(customers)
    .where(and(inArray(customers.id, [...customerIds]), eq(customers.status, "inactive")));
  return new Map(rows.map((row) => [row.id, closedAccountOfLocked(row)!]));
}

export async function closedAccount(
  tx: Executor,
  money: MoneyLock,
  customerId: number,
): Promise<ClosedAccount | null> {
  return (await closedAccountsAmong(tx, money, [customerId])).get(customerId) ?? null;
}

/**
 * Records a payment for a closed account in the unmatched queue instead of crediting it, and tells the
 * account's holder. Null when the provider reference was already recorded (nothing is written).
 */
export async function holdForClosedAccount(
  tx: Executor,
  actor: Actor,
  now: Date,
  account: ClosedAccount,
  input: PaymentInput,
): Promise<number | null> {
  const paymentId = await recordUncreditedPaymentInTx(tx, now, input, "unmatched", account.holdReason);
  if (paymentId === null) return null;
  await audit(tx, actor, now, {
    action: "payment.unmatched",
    entity: "payment",
    entityId: paymentId,
    reason: account.holdReason,
    details: { customerId: account.customerId, amountCents: input.amountCents, ref: input.providerRef },
  });
  await tellNotCredited(tx, now, account, paymentId, input.amountCents);
  return paymentId;
}

/**
 * A payment already waiting in the unmatched queue turns out to be for a closed account (a push's
 * money queued before its checkout id was known): it stays there, its reason now saying whose it is.
 */
export async function keepQueuedForClosedAccount(
  tx: Executor,
  now: Date,
  account: ClosedAccount,
  paymentId: number,
): Promise<void> {
  const [kept] = await tx
    .update(payments)
    .set({ holdReason: account.holdReason })
    .where(and(eq(payments.id, paymentId), eq(payments.status, "unmatched")))
    .returning({ amountCents: payments.amountCents });
  if (kept) await tellNotCredited(tx, now, account, paymentId, kept.amountCents);
}

/**
 * The payer is told the money reached us but not the account, so they do not pay again and expect a
 * refund; once per payment.
 */
function tellNotCredited(
  tx: Executor,
  now: Date,
  account: ClosedAccount,
  paymentId: number,
  amountCents: number,
): Promise<void> {
  return enqueueMessage(tx, now, {
    recipient: account.phone,
    language: account.language,
    template: "payment_not_credited",
    params: { amountCents, account: account.accountNumber },
    dedupeKey: `payment:${paymentId}:not_credited`,
  });
}
