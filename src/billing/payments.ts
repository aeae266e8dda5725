import { eq, sql } from "drizzle-orm";
import { type Executor, queryRows } from "../db/client.ts";
import { intArray } from "../db/params.ts";
import { payments } from "../db/schema/index.ts";
import { normaliseAccountReference } from "./accounts.ts";
import { audit } from "./audit.ts";
import { closedAccountOfLocked, closedAccountsAmong, holdForClosedAccount } from "./closed-accounts.ts";
import type { Actor, BillingContext } from "./context.ts";
import { balanceOf, settleOpenInvoices } from "./ledger.ts";
import { assertCovers, lockCustomerByAccount, lockCustomerMoney, type MoneyLock } from "./money-lock.ts";
import {
  existingPaymentId,
  insertCreditedPaymentOnce,
  insertPaymentOnce,
  mpesaReceiptOf,
  type PaymentInput,
  refKey,
  validatePayment,
} from "./payment-rows.ts";
import { restoreIfSettled } from "./restore.ts";

export interface ApplyPaymentResult {
  paymentId: number;
  duplicate: boolean;
  balanceCents: number;
  restoredSubscriptionIds: number[];
  /** Set when the account is closed to payments: the money waits in the unmatched queue instead. */
  heldReason?: string;
}

interface FreshPayment {
  paymentId: number;
  customerId: number;
  input: PaymentInput;
}

/**
 * Credits recorded payments to their customers, set-based: ledger, invoices oldest first,
 * service waiting on money, receipts and audit, in a fixed number of statements for any number
 * of payments (restoring service is per customer, and only for those who have something waiting).
 */
async function creditPayments(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  money: MoneyLock,
  fresh: FreshPayment[],
  now: Date,
  /** The caller wrote the ledger entries with the payment rows (one statement fewer). */
  ledgerWritten = false,
): Promise<{ balances: Map<number, number>; restored: Map<number, number[]> }> {
  const balances = new Map<number, number>();
  const restored = new Map<number, number[]>();
  if (fresh.length === 0) return { balances, restored };
  const customerIds = [...new Set(fresh.map((p) => p.customerId))];
  for (const customerId of customerIds) assertCovers(money, customerId);
  const at = now.toISOString();
  // One JSON parameter carries the whole batch: building hundreds of bind parameters costs more
  // than the statements themselves.
  const batch = JSON.stringify(
    fresh.map(({ paymentId, customerId, input }) => ({
      payment_id: paymentId,
      customer_id: customerId,
      amount_cents: input.amountCents,
      memo: `${input.method} ${input.providerRef.trim()}`,
      receipt: mpesaReceiptOf(input),
      details: {
        customerId,
        amountCents: input.amountCents,
        method: input.method,
        ref: input.providerRef.trim(),
      },
    })),
  );
  const rows = sql`jsonb_to_recordset(${batch}::jsonb) as i(payment_id int, customer_id int, amount_cents bigint,
    memo text, receipt text, details jsonb)`;
  if (!ledgerWritten)
    await tx.execute(sql`
      insert into ledger_entries (customer_id, kind, amount_cents, payment_id, memo, created_at)
      select i.customer_id, 'payment', i.amount_cents, i.payment_id, i.memo, ${at}::timestamptz from ${rows}`);
  await settleOpenInvoices(tx, money, now, sql`select unnest(${intArray(customerIds)})`);
  // Receipts and audit entries, in one statement, before anything the payment leads to (service
  // back on): the receipt is written first, so it is sent first (the SMS worker keeps each
  // recipient's messages in the order they were written). Each receipt shows the balance right
  // after its own payment: the balance after the batch less the batch's later payments.
  const sums = await queryRows<{ customer_id: number; balance: string; waiting: boolean }>(
    tx,
    sql`
    with batch as (select * from ${rows}),
    balances as (
      select customer_id, sum(amount_cents) as balance from ledger_entries
      where customer_id = any(${intArray(customerIds)}) group by customer_id
    ),
    ordered as (
      select batch.*, coalesce(sum(amount_cents) over (partition by customer_id order by payment_id desc
        rows between unbounded preceding and 1 preceding), 0) as later
      from batch
    ),
    receipts as (
      insert into message_outbox (channel, recipient, language, template, params, dedupe_key, next_attempt_at, created_at)
      select 'sms', c.phone, c.language, case when i.receipt is null then 'payment_received_plain' else 'payment_received' end,
        jsonb_strip_nulls(jsonb_build_object('amountCents', i.amount_cents, 'balanceCents', b.balance - i.later,
          'account', c.account_number, 'receipt', i.receipt)),
        'payment:' || i.payment_id, ${at}::timestamptz, ${at}::timestamptz
      from ordered i join customers c on c.id = i.customer_id join balances b on b.customer_id = i.customer_id
      order by i.payment_id
      on conflict (dedupe_key) do nothing
    ),
    audited as (
      insert into audit_log (actor_kind, actor_id, channel, action, entity, entity_id, details, at)
      select ${actor.kind}, ${actor.id}, ${actor.channel ?? null}::text, 'payment.applied', 'payment',
        i.payment_id::text, i.details, ${at}::timestamptz
      from batch i
    )
    select b.customer_id, b.balance::text as balance,
      exists (select 1 from subscriptions s where s.customer_id = b.customer_id
              and (s.status = 'pending' or (s.status = 'suspended' and s.suspended_reason = 'dunning'))) as waiting
    from balances b`,
  );
  // Service waiting on money (a first payment, a dunning suspension) is brought back after the
  // receipts were written, so they go out first; customer by customer in ascending id, the order
  // of their locks.
  for (const row of [...sums].sort((a, b) => Number(a.customer_id) - Number(b.customer_id))) {
    if (!row.waiting) continue;
    const customerId = Number(row.customer_id);
    restored.set(customerId, await restoreIfSettled(tx, ctx, actor, customerId, now));
  }
  for (const row of sums) balances.set(Number(row.customer_id), Number(row.balance));
  return { balances, restored };
}

export async function creditPayment(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  money: MoneyLock,
  paymentId: number,
  customerId: number,
  input: PaymentInput,
  now: Date,
  ledgerWritten = false,
): Promise<ApplyPaymentResult> {
  const { balances, restored } = await creditPayments(
    tx,
    ctx,
    actor,
    money,
    [{ paymentId, customerId, input }],
    now,
    ledgerWritten,
  );
  return {
    paymentId,
    duplicate: false,
    balanceCents: balances.get(customerId) ?? 0,
    restoredSubscriptionIds: restored.get(customerId) ?? [],
  };
}

/**
 * Applies many payments in the caller's transaction, each exactly once per provider reference
 * (a reference repeated within the batch, or already known, is a duplicate and changes nothing).
 * Results come back in the order of `inputs`.
 */
export async function applyPaymentsInTx(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  inputs: (PaymentInput & { customerId: number })[],
): Promise<ApplyPaymentResult[]> {
  for (const input of inputs) validatePayment(input);
  if (inputs.length === 0) return [];
  const now = ctx.clock.now();
  const customerIds = [...new Set(inputs.map((i) => i.customerId))].sort((a, b) => a - b);
  const money = await lockCustomerMoney(tx, customerIds);
  // A closed account's money waits in the unmatched queue instead (closed-accounts.ts).
  const closed = await closedAccountsAmong(tx, money, customerIds);
  const open = closed.size === 0 ? inputs : inputs.filter((input) => !closed.has(input.customerId));
  const credited = await creditLocked(tx, ctx, actor, money, open, now);
  if (closed.size === 0) return credited;
  const results: ApplyPaymentResult[] = [];
  for (const input of inputs) {
    const account = closed.get(input.customerId);
    if (!account) results.push(credited.shift()!);
    else {
      const held = await holdForClosedAccount(tx, actor, now, account, input);
      results.push({
        paymentId: held ?? (await existingPaymentId(tx, input)),
        duplicate: held === null,
        balanceCents: await balanceOf(tx, input.customerId),
        restoredSubscriptionIds: [],
        heldReason: account.holdReason,
      });
    }
  }
  return results;
}

/** `applyPaymentsInTx` for accounts open to payments, their money lock held. */
async function creditLocked(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  money: MoneyLock,
  inputs: (PaymentInput & { customerId: number })[],
  now: Date,
): Promise<ApplyPaymentResult[]> {
  if (inputs.length === 0) return [];
  const customerIds = [...new Set(inputs.map((i) => i.customerId))].sort((a, b) => a - b);
  const firstOfKey = new Map<string, number>();
  inputs.forEach((input, index) => {
    const key = refKey(input.provider, input.providerRef);
    if (!firstOfKey.has(key)) firstOfKey.set(key, index);
  });
  const candidates = [...firstOfKey.values()].map((index) => inputs[index]!);
  const batch = JSON.stringify(
    candidates.map((input) => ({
      customer_id: input.customerId,
      method: input.method,
      provider: input.provider,
      provider_ref: input.providerRef.trim(),
      amount_cents: input.amountCents,
      phone: input.phone ?? null,
      account_reference: input.accountReference ?? null,
      payer_name: input.payerName ?? null,
      received_at: (input.receivedAt ?? now).toISOString(),
    })),
  );
  // The payments and their ledger credits in one statement (the rest of the credit follows).
  const inserted = await queryRows<{ id: number; provider: string; provider_ref: string }>(
    tx,
    sql`with inserted as (
          insert into payments (customer_id, method, provider, provider_ref, amount_cents, phone, account_reference,
            payer_name, status, received_at)
          select r.customer_id, r.method, r.provider, r.provider_ref, r.amount_cents, r.phone, r.account_reference,
            r.payer_name, 'applied', r.received_at
          from jsonb_to_recordset(${batch}::jsonb) as r(customer_id int, method text, provider text, provider_ref text,
            amount_cents bigint, phone text, account_reference text, payer_name text, received_at timestamptz)
          on conflict do nothing
          returning id, customer_id, method, provider, provider_ref, amount_cents
        ),
        credited as (
          insert into ledger_entries (customer_id, kind, amount_cents, payment_id, memo, created_at)
          select customer_id, 'payment', amount_cents, id, method || ' ' || provider_ref, ${now.toISOString()}::timestamptz
          from inserted
        )
        select id, provider, provider_ref from inserted`,
  );
  const freshIds = new Map(inserted.map((row) => [refKey(row.provider, row.provider_ref), Number(row.id)]));
  const fresh: FreshPayment[] = [];
  for (const [key, index] of firstOfKey) {
    const paymentId = freshIds.get(key);
    if (paymentId !== undefined)
      fresh.push({ paymentId, customerId: inputs[index]!.customerId, input: inputs[index]! });
  }
  const { balances, restored } = await creditPayments(tx, ctx, actor, money, fresh, now, true);

  const knownIds = new Map(freshIds);
  const missing = [...firstOfKey.keys()].filter((key) => !knownIds.has(key));
  if (missing.length > 0) {
    const existing = await tx
      .select({ id: payments.id, provider: payments.provider, providerRef: payments.providerRef })
      .from(payments)
      .where(
        sql`(${payments.provider}, ${payments.providerRef}) in (select * from jsonb_to_recordset(${JSON.stringify(
          missing.map((key) => {
            const [provider, ref] = key.split("\u0000") as [string, string];
            return { provider, ref };
          }),
        )}::jsonb) as m(provider text, ref text))`,
      );
    for (const row of existing) knownIds.set(refKey(row.provider, row.providerRef), row.id);
  }
  if (balances.size < customerIds.length) {
    for (const customerId of customerIds) {
      if (!balances.has(customerId)) balances.set(customerId, await balanceOf(tx, customerId));
    }
  }
  const credited = new Set<number>();
  return inputs.map((input, index) => {
    const key = refKey(input.provider, input.providerRef);
    const paymentId = knownIds.get(key);
    if (paymentId === undefined) throw new Error("payment vanished after a unique conflict");
    const isFresh = firstOfKey.get(key) === index && freshIds.has(key);
    const firstRestore = isFresh && !credited.has(input.customerId);
    if (isFresh) credited.add(input.customerId);
    return {
      paymentId,
      duplicate: !isFresh,
      balanceCents: balances.get(input.customerId) ?? 0,
      restoredSubscriptionIds: firstRestore ? (restored.get(input.customerId) ?? []) : [],
    };
  });
}

export async function applyPaymentInTx(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  input: PaymentInput & { customerId: number },
): Promise<ApplyPaymentResult> {
  const [result] = await applyPaymentsInTx(tx, ctx, actor, [input]);
  return result!;
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
 * one matches and is open to payments; otherwise it waits in the unmatched queue for an admin.
 */
export async function recordPaymentByReferenceInTx(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  input: PaymentInput & { reference: string },
): Promise<ReferencePaymentResult> {
  validatePayment(input);
  const now = ctx.clock.now();
  // Locked before the payment row is written, so the credit below is computed alone.
  const { customer, lock: money } = await lockCustomerByAccount(
    tx,
    normaliseAccountReference(input.reference),
  );
  const withReference = { ...input, accountReference: input.reference };
  const closed = customer ? closedAccountOfLocked(customer) : null;
  const paymentId = closed
    ? await holdForClosedAccount(tx, actor, now, closed, withReference)
    : customer
      ? await insertCreditedPaymentOnce(tx, withReference, customer.id, now)
      : await insertPaymentOnce(tx, withReference, null, now);
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
  if (closed) return { paymentId, duplicate: false, matched: false, customerId: null };
  if (!customer) {
    await audit(tx, actor, now, {
      action: "payment.unmatched",
      entity: "payment",
      entityId: paymentId,
      details: { reference: input.reference, amountCents: input.amountCents },
    });
    return { paymentId, duplicate: false, matched: false, customerId: null };
  }
  await creditPayment(tx, ctx, actor, money, paymentId, customer.id, withReference, now, true);
  return { paymentId, duplicate: false, matched: true, customerId: customer.id };
}

export function recordPaymentByReference(
  ctx: BillingContext,
  actor: Actor,
  input: PaymentInput & { reference: string },
): Promise<ReferencePaymentResult> {
  return ctx.db.transaction((tx) => recordPaymentByReferenceInTx(tx, ctx, actor, input));
}
