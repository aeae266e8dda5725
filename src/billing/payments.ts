import { and, desc, eq, sql } from "drizzle-orm";
import type { Db, Executor } from "../db/client.ts";
import { customers, ledgerEntries, type PaymentMethod, payments } from "../db/schema/index.ts";
import { findCustomerByAccountReference } from "./accounts.ts";
import { audit } from "./audit.ts";
import { type Actor, type BillingContext, BillingError } from "./context.ts";
import { balanceOf, oneCustomer, postLedgerEntry, settleOpenInvoices } from "./ledger.ts";
import { assertCents } from "./money.ts";
import { enqueueMessage } from "./outbox.ts";
import { restoreIfSettled } from "./restore.ts";

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

export interface ApplyPaymentResult {
  paymentId: number;
  duplicate: boolean;
  balanceCents: number;
  restoredSubscriptionIds: number[];
}

function validate(input: PaymentInput): void {
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
async function insertPaymentOnce(
  tx: Executor,
  input: PaymentInput,
  customerId: number | null,
  now: Date,
): Promise<number | null> {
  const [inserted] = await tx
    .insert(payments)
    .values({
      customerId,
      method: input.method,
      provider: input.provider,
      providerRef: input.providerRef.trim(),
      amountCents: input.amountCents,
      phone: input.phone ?? null,
      accountReference: input.accountReference ?? null,
      payerName: input.payerName ?? null,
      status: customerId === null ? "unmatched" : "applied",
      receivedAt: input.receivedAt ?? now,
    })
    .onConflictDoNothing()
    .returning({ id: payments.id });
  return inserted?.id ?? null;
}

async function existingPaymentId(tx: Executor, input: PaymentInput): Promise<number> {
  const [row] = await tx
    .select({ id: payments.id })
    .from(payments)
    .where(and(eq(payments.provider, input.provider), eq(payments.providerRef, input.providerRef.trim())));
  if (!row) throw new Error("payment vanished after a unique conflict");
  return row.id;
}

/** Credits a recorded payment to a customer: ledger, invoices, service, receipt. */
async function creditPayment(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  paymentId: number,
  customerId: number,
  input: PaymentInput,
  now: Date,
): Promise<ApplyPaymentResult> {
  await postLedgerEntry(tx, {
    customerId,
    kind: "payment",
    amountCents: input.amountCents,
    paymentId,
    memo: `${input.method} ${input.providerRef.trim()}`,
    at: now,
  });
  await settleOpenInvoices(tx, now, oneCustomer(customerId));
  const restoredSubscriptionIds = await restoreIfSettled(tx, ctx, actor, customerId, now);
  const balanceCents = await balanceOf(tx, customerId);
  const [customer] = await tx.select().from(customers).where(eq(customers.id, customerId));
  if (customer) {
    await enqueueMessage(tx, now, {
      recipient: customer.phone,
      language: customer.language,
      template: "payment_received",
      params: {
        amountCents: input.amountCents,
        balanceCents,
        account: customer.accountNumber,
        receipt: input.providerRef.trim(),
      },
      dedupeKey: `payment:${paymentId}`,
    });
  }
  await audit(tx, actor, now, {
    action: "payment.applied",
    entity: "payment",
    entityId: paymentId,
    details: {
      customerId,
      amountCents: input.amountCents,
      method: input.method,
      ref: input.providerRef.trim(),
    },
  });
  return { paymentId, duplicate: false, balanceCents, restoredSubscriptionIds };
}

export async function applyPaymentInTx(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  input: PaymentInput & { customerId: number },
): Promise<ApplyPaymentResult> {
  validate(input);
  const now = ctx.clock.now();
  const paymentId = await insertPaymentOnce(tx, input, input.customerId, now);
  if (paymentId === null) {
    return {
      paymentId: await existingPaymentId(tx, input),
      duplicate: true,
      balanceCents: await balanceOf(tx, input.customerId),
      restoredSubscriptionIds: [],
    };
  }
  return creditPayment(tx, ctx, actor, paymentId, input.customerId, input, now);
}

/** Applies a payment to a customer's account, exactly once per provider reference. */
export function applyPayment(
  ctx: BillingContext,
  actor: Actor,
  input: PaymentInput & { customerId: number },
): Promise<ApplyPaymentResult> {
  return ctx.db.transaction((tx) => applyPaymentInTx(tx, ctx, actor, input));
}

export interface ReferencePaymentResult {
  paymentId: number;
  duplicate: boolean;
  matched: boolean;
  customerId: number | null;
}

/**
 * A paybill payment names an account the payer typed by hand. It is credited to that account when
 * one matches; otherwise it waits in the unmatched queue for an admin.
 */
export async function recordPaymentByReferenceInTx(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  input: PaymentInput & { reference: string },
): Promise<ReferencePaymentResult> {
  validate(input);
  const now = ctx.clock.now();
  const customer = await findCustomerByAccountReference(tx, input.reference);
  const withReference = { ...input, accountReference: input.reference };
  const paymentId = await insertPaymentOnce(tx, withReference, customer?.id ?? null, now);
  if (paymentId === null) {
    const id = await existingPaymentId(tx, input);
    const [row] = await tx.select().from(payments).where(eq(payments.id, id));
    return {
      paymentId: id,
      duplicate: true,
      matched: row?.status === "applied",
      customerId: row?.customerId ?? null,
    };
  }
  if (!customer) {
    await audit(tx, actor, now, {
      action: "payment.unmatched",
      entity: "payment",
      entityId: paymentId,
      details: { reference: input.reference, amountCents: input.amountCents },
    });
    return { paymentId, duplicate: false, matched: false, customerId: null };
  }
  await creditPayment(tx, ctx, actor, paymentId, customer.id, withReference, now);
  return { paymentId, duplicate: false, matched: true, customerId: customer.id };
}

export function recordPaymentByReference(
  ctx: BillingContext,
  actor: Actor,
  input: PaymentInput & { reference: string },
): Promise<ReferencePaymentResult> {
  return ctx.db.transaction((tx) => recordPaymentByReferenceInTx(tx, ctx, actor, input));
}

export async function listUnmatchedPayments(db: Executor) {
  return db
    .select()
    .from(payments)
    .where(eq(payments.status, "unmatched"))
    .orderBy(desc(payments.receivedAt));
}

/**
 * An admin decides which account an unmatched payment belongs to. The status flip is guarded in SQL
 * so two admins assigning the same payment at once credit it once.
 */
export async function assignUnmatchedPayment(
  ctx: BillingContext,
  actor: Actor,
  input: { paymentId: number; accountNumber: string },
): Promise<ApplyPaymentResult> {
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const customer = await findCustomerByAccountReference(tx, input.accountNumber);
    if (!customer) throw new BillingError("unknown_account", `No account ${input.accountNumber}.`);
    const [claimed] = await tx
      .update(payments)
      .set({ customerId: customer.id, status: "applied" })
      .where(and(eq(payments.id, input.paymentId), eq(payments.status, "unmatched")))
      .returning();
    if (!claimed) throw new BillingError("not_unmatched", "That payment is not waiting to be assigned.");
    const result = await creditPayment(
      tx,
      ctx,
      actor,
      claimed.id,
      customer.id,
      {
        method: claimed.method,
        provider: claimed.provider,
        providerRef: claimed.providerRef,
        amountCents: claimed.amountCents,
      },
      now,
    );
    await audit(tx, actor, now, {
      action: "payment.assigned",
      entity: "payment",
      entityId: claimed.id,
      details: { accountNumber: customer.accountNumber },
    });
    return result;
  });
}

/** Sum of all payment credits, for reconciliation with the provider's statements. */
export async function totalCreditedCents(db: Db): Promise<number> {
  const [row] = await db
    .select({ total: sql<string>`coalesce(sum(${ledgerEntries.amountCents}), 0)` })
    .from(ledgerEntries)
    .where(eq(ledgerEntries.kind, "payment"));
  return Number(row?.total ?? 0);
}
