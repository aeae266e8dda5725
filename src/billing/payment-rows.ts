import { and, eq, sql } from "drizzle-orm";
import { type Executor, queryRows } from "../db/client.ts";
import { type PaymentMethod, payments } from "../db/schema/index.ts";
import { BillingError } from "./context.ts";
import { assertCents } from "./money.ts";

/**
 * Payment rows as they are written: one per provider reference, ever (the unique index decides
 * between concurrent duplicates), with the ledger credit in the same statement for a payment to an
 * account. What a payment then does for its customer is payments.ts's.
 */

export interface PaymentInput {
  method: PaymentMethod;
  /** `mpesa` for STK and C2B alike, `cash` for cash recorded by an admin, ... */
  provider: string;
  /** The provider's unique id (M-Pesa receipt number): the same id is credited once, ever. */
  providerRef: string;
  amountCents: number;
  phone?: string;
  accountReference?: string;
  payerName?: string;
  receivedAt?: Date;
}

export function validatePayment(input: PaymentInput): void {
  assertCents(input.amountCents);
  if (input.amountCents <= 0) throw new BillingError("invalid_amount", "A payment must be more than zero.");
  if (!input.providerRef.trim())
    throw new BillingError("invalid_reference", "A payment needs its reference.");
}

/**
 * Inserts the payment row unless the provider reference is already known. The unique index decides,
 * so concurrent duplicates (a callback delivered twice, a callback racing a status query) resolve to
 * one row; the losers get `null`.
 */
export async function insertPaymentOnce(
  tx: Executor,
  input: PaymentInput,
  customerId: number | null,
  now: Date,
): Promise<number | null> {
  const [inserted] = await tx
    .insert(payments)
    .values(paymentRow(input, customerId, now))
    .onConflictDoNothing()
    .returning({ id: payments.id });
  return inserted?.id ?? null;
}

/**
 * `insertPaymentOnce` for a payment to an account, with its ledger credit in the same statement
 * (the rest of the credit is payments.ts's `creditPayments` with `ledgerWritten`).
 */
export async function insertCreditedPaymentOnce(
  tx: Executor,
  input: PaymentInput,
  customerId: number,
  now: Date,
): Promise<number | null> {
  const row = paymentRow(input, customerId, now);
  const [inserted] = await queryRows<{ id: number }>(
    tx,
    sql`with inserted as (
          insert into payments (customer_id, method, provider, provider_ref, amount_cents, phone, account_reference,
            payer_name, status, hold_reason, received_at)
          values (${customerId}::int, ${row.method}, ${row.provider}, ${row.providerRef}, ${row.amountCents},
            ${row.phone ?? null}::text, ${row.accountReference ?? null}::text, ${row.payerName ?? null}::text, 'applied',
            null, ${(row.receivedAt as Date).toISOString()}::timestamptz)
          on conflict do nothing
          returning id, amount_cents
        ),
        credited as (
          insert into ledger_entries (customer_id, kind, amount_cents, payment_id, memo, created_at)
          select ${customerId}::int, 'payment', amount_cents, id, ${`${input.method} ${input.providerRef.trim()}`},
            ${now.toISOString()}::timestamptz
          from inserted
        )
        select id from inserted`,
  );
  return inserted ? Number(inserted.id) : null;
}

/**
 * Records a payment that credits no account: a walk-in voucher sale (`applied`: it bought the
 * voucher) or money an admin must place (`unmatched`). Same unique key as every payment, so the
 * receipt is still recorded once; `null` when it was already known.
 */
export async function recordUncreditedPaymentInTx(
  tx: Executor,
  now: Date,
  input: PaymentInput,
  status: "applied" | "unmatched",
  /** Why an unmatched payment waits: shown to the admin who places it. */
  holdReason?: string,
): Promise<number | null> {
  const [inserted] = await tx
    .insert(payments)
    .values({ ...paymentRow(input, null, now), status, holdReason: holdReason ?? null })
    .onConflictDoNothing()
    .returning({ id: payments.id });
  return inserted?.id ?? null;
}

function paymentRow(input: PaymentInput, customerId: number | null, now: Date): typeof payments.$inferInsert {
  return {
    customerId,
    method: input.method,
    provider: input.provider,
    providerRef: input.providerRef.trim(),
    amountCents: input.amountCents,
    phone: input.phone ?? null,
    accountReference: input.accountReference ?? null,
    payerName: input.payerName ?? null,
    status: customerId === null ? "unmatched" : "applied",
    holdReason: customerId === null ? "no account matches the reference" : null,
    receivedAt: input.receivedAt ?? now,
  };
}

/**
 * The M-Pesa receipt number a payment's SMS names, or null: cash, bank and corrections have none
 * (their reference is ours), nor has a push credited before its receipt was known (`stk:<checkout>`).
 */
export function mpesaReceiptOf(input: PaymentInput): string | null {
  const ref = input.providerRef.trim();
  return input.method.startsWith("mpesa") && !ref.startsWith("stk:") ? ref : null;
}

export async function existingPaymentId(tx: Executor, input: PaymentInput): Promise<number> {
  const [row] = await tx
    .select({ id: payments.id })
    .from(payments)
    .where(and(eq(payments.provider, input.provider), eq(payments.providerRef, input.providerRef.trim())));
  if (!row) throw new Error("payment vanished after a unique conflict");
  return row.id;
}

export const refKey = (provider: string, ref: string) => `${provider}\u0000${ref.trim()}`;
