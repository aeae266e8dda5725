import { and, asc, eq, isNotNull, isNull, lte, type SQL, sql } from "drizzle-orm";
import { type Executor, queryRows } from "../db/client.ts";
import {
  customers,
  type IntentPurpose,
  type IntentStatus,
  mpesaCallbacks,
  paymentIntents,
  payments,
} from "../db/schema/index.ts";
import { normalizePhone } from "../lib/phone.ts";
import { audit } from "./audit.ts";
import { type Actor, type BillingContext, BillingError } from "./context.ts";
import { onceUnderKey } from "./idempotency.ts";
import { formatKes, toWholeShillingsUp } from "./money.ts";
import { enqueueMessage } from "./outbox.ts";
import {
  applyPaymentInTx,
  applyPaymentsInTx,
  recordPaymentByReferenceInTx,
  recordUncreditedPaymentInTx,
} from "./payments.ts";
import { changePlanInTx } from "./plan-change.ts";
import { sellVoucherInTx } from "./vouchers.ts";

/** A text[] as one parameter: the statement text stays the same, so its prepared form is reused. */
const textArray = (values: string[]) =>
  sql`array(select jsonb_array_elements_text(${JSON.stringify(values)}::jsonb))`;

/**
 * Payment intents: every STK prompt is recorded here before anything is sent to M-Pesa.
 *
 * Amounts: M-Pesa takes whole shillings, so an intent's amount is rounded UP to whole shillings
 * when it is recorded (a balance of KES 10.40 is asked as KES 11, the extra stays as credit).
 * What is credited is what M-Pesa says was paid (the callback's Amount), never the intent's figure.
 */

export interface AmountBounds {
  minCents: number;
  maxCents: number;
}

export interface PaymentLimits {
  /** Prompts allowed per phone, and per channel session, within `windowMs`. */
  promptsPerWindow: number;
  windowMs: number;
  amounts: Record<IntentPurpose, AmountBounds>;
}

/** M-Pesa's own single-transaction limits are KES 1 to KES 250,000; a voucher never costs that much. */
export const defaultPaymentLimits: PaymentLimits = {
  promptsPerWindow: 3,
  windowMs: 5 * 60_000,
  amounts: {
    balance: { minCents: 100, maxCents: 150_000_00 },
    voucher: { minCents: 100, maxCents: 20_000_00 },
    plan_change: { minCents: 100, maxCents: 150_000_00 },
  },
};

export interface PaymentRequest {
  phone: string;
  purpose: IntentPurpose;
  amountCents: number;
  customerId?: number;
  planId?: number;
  subscriptionId?: number;
  channel: string;
  channelSessionId?: string;
  /**
   * Makes the request exactly-once under this key: a repeat (a retried or duplicated confirmation)
   * records nothing and takes no prompt slot, and is answered with the intent the first one recorded.
   */
  idempotencyKey?: string;
}

export type RequestPaymentResult =
  | { ok: true; intentId: number }
  | { ok: false; reason: "rate_limited" | "amount_out_of_range" | "invalid"; message: string };

/**
 * A number M-Pesa can prompt: a Kenyan mobile (`+2547…` / `+2541…`) in E.164, from however it was
 * written; null for anything else (a landline, a foreign number, not a number).
 */
export function normalizeKenyanPhone(input: string): string | null {
  const e164 = normalizePhone(input);
  return e164 && /^\+254[17]\d{8}$/.test(e164) ? e164 : null;
}

const invalid = (message: string): RequestPaymentResult => ({ ok: false, reason: "invalid", message });

/**
 * Records a pending STK intent after the abuse limits; does not talk to M-Pesa (the dispatcher
 * sends it right after). Concurrent requests for one phone or session are serialized by
 * transaction-scoped advisory locks, so the limit holds under races too.
 */
export async function requestPayment(
  ctx: BillingContext,
  actor: Actor,
  input: PaymentRequest,
  limits: PaymentLimits = defaultPaymentLimits,
): Promise<RequestPaymentResult> {
  const phone = normalizeKenyanPhone(input.phone);
  if (!phone) return invalid("That is not a Safaricom phone number.");
  if (!Number.isSafeInteger(input.amountCents) || input.amountCents <= 0)
    return invalid("The amount must be a positive number.");
  const amountCents = toWholeShillingsUp(input.amountCents) * 100;
  const bounds = limits.amounts[input.purpose];
  if (!bounds) return invalid("Unknown payment purpose.");
  if (amountCents < bounds.minCents || amountCents > bounds.maxCents) {
    return {
      ok: false,
      reason: "amount_out_of_range",
      message: `The amount must be between ${formatKes(bounds.minCents)} and ${formatKes(bounds.maxCents)}.`,
    };
  }
  if (input.purpose === "voucher" && input.planId === undefined) return invalid("Choose a package first.");
  if (input.purpose === "plan_change" && (input.planId === undefined || input.subscriptionId === undefined))
    return invalid("Choose the new plan first.");
  if (input.purpose !== "voucher" && input.customerId === undefined && input.subscriptionId === undefined)
    return invalid("No account to pay for.");

  // One statement, so one round trip: this runs on every USSD confirmation, which must answer fast.
  // It checks the references, takes a slot in the per-phone (then per-session) sliding window, and
  // records the intent with its audit entry; a refused check, a full window or a repeated key
  // inserts nothing.
  const now = ctx.clock.now();
  const at = now.toISOString();
  const since = new Date(now.getTime() - limits.windowMs).toISOString();
  const sessionKey = input.channelSessionId ? `stk-session:${input.channel}:${input.channelSessionId}` : null;
  // Takes a slot under `key` for each row of `source` (one row when the previous checks passed).
  const window = (key: string, source: SQL) => sql`
    insert into rate_limit_windows as w (key, hits, updated_at)
    select ${key}::text, array[${at}::timestamptz], ${at}::timestamptz from ${source}
    on conflict (key) do update
      set hits = array(select h from unnest(w.hits) as h where h > ${since}::timestamptz) || ${at}::timestamptz,
          updated_at = ${at}::timestamptz
      where (select count(*) from unnest(w.hits) as h where h > ${since}::timestamptz) < ${limits.promptsPerWindow}
    returning key`;
  const key = input.idempotencyKey ?? null;
  const once = onceUnderKey(key, at);
  const sub = input.subscriptionId ?? null;
  const plan = input.planId ?? null;
  const customer = input.customerId ?? null;
  const details = JSON.stringify({ purpose: input.purpose, amountCents, phone });
  const [row] = await queryRows<{
    sub_customer: number | null;
    plan_active: boolean | null;
    customer: number | null;
    id: number | null;
    first: boolean;
    earlier_id: number | null;
    earlier_purpose: IntentPurpose | null;
    earlier_amount_cents: number | string | null;
    earlier_phone: string | null;
  }>(
    ctx.db,
    sql`
    with claim as (${once.claim}),
    checks as (
      select
        (select customer_id from subscriptions where id = ${sub}::int) as sub_customer,
        (select active from plans where id = ${plan}::int) as plan_active,
        (select id from customers where id = ${customer}::int) as customer
    ),
    earlier as (select id, purpose, amount_cents, phone from payment_intents where idempotency_key = ${key}::text),
    valid as (
      select coalesce(${customer}::int, c.sub_customer) as customer_id from checks c
      where (${sub}::int is null or (c.sub_customer is not null and (${customer}::int is null or ${customer}::int = c.sub_customer)))
        and (${plan}::int is null or c.plan_active)
        and (${sub}::int is not null or ${customer}::int is null or c.customer is not null)
        and ${once.first(sql`claim`)}
        and not exists (select 1 from earlier)
    ),
    phone_slot as (${window(`stk-phone:${phone}`, sql`valid`)}),
    session_slot as (${sessionKey ? window(sessionKey, sql`phone_slot`) : sql`select null::text as key where false`}),
    inserted as (
      insert into payment_intents (customer_id, phone, purpose, amount_cents, plan_id, subscription_id, channel,
        channel_session_id, idempotency_key, status, next_send_at, created_at, updated_at)
      select v.customer_id, ${phone}, ${input.purpose}, ${amountCents}, ${plan}::int, ${sub}::int, ${input.channel},
        ${input.channelSessionId ?? null}::text, ${key}::text, 'pending', ${at}::timestamptz, ${at}::timestamptz, ${at}::timestamptz
      from valid v
      where exists (select 1 from phone_slot) and (${sessionKey}::text is null or exists (select 1 from session_slot))
      on conflict (idempotency_key) do nothing
      returning id
    ),
    audited as (
      insert into audit_log (actor_kind, actor_id, channel, action, entity, entity_id, details, at)
      select ${actor.kind}, ${actor.id}, ${actor.channel ?? null}::text, 'payment_intent.requested', 'payment_intent',
        id::text, ${details}::jsonb, ${at}::timestamptz
      from inserted
    )
    select c.sub_customer, c.plan_active, c.customer, (select id from inserted) as id, ${once.first(sql`claim`)} as first,
      e.id as earlier_id, e.purpose as earlier_purpose, e.amount_cents as earlier_amount_cents, e.phone as earlier_phone
    from checks c left join earlier e on true`,
  );
  if (row?.id != null) return { ok: true, intentId: Number(row.id) };
  if (key !== null && row && (!row.first || row.earlier_id != null)) {
    // A repeat: answer with what the first request recorded. A repeat that ran at the same moment
    // waited for the first one's commit, which its snapshot predates, so it looks again.
    const [earlier] =
      row.earlier_id != null
        ? [
            {
              id: row.earlier_id,
              purpose: row.earlier_purpose,
              amountCents: row.earlier_amount_cents,
              phone: row.earlier_phone,
            },
          ]
        : await ctx.db
            .select({
              id: paymentIntents.id,
              purpose: paymentIntents.purpose,
              amountCents: paymentIntents.amountCents,
              phone: paymentIntents.phone,
            })
            .from(paymentIntents)
            .where(eq(paymentIntents.idempotencyKey, key));
    if (earlier) {
      const same =
        earlier.purpose === input.purpose &&
        Number(earlier.amountCents) === amountCents &&
        earlier.phone === phone;
      if (!same) return invalid("That confirmation was already used for another payment.");
      return { ok: true, intentId: Number(earlier.id) };
    }
    // The first request under this key was refused; the checks below give the same reason again.
  }
  if (sub !== null) {
    if (row?.sub_customer == null) return invalid("That subscription does not exist.");
    if (customer !== null && customer !== Number(row.sub_customer))
      return invalid("That subscription is not yours.");
  }
  if (plan !== null && !row?.plan_active) return invalid("That package is not on sale.");
  if (sub === null && customer !== null && row?.customer == null)
    return invalid("That account does not exist.");
  const minutes = Math.max(1, Math.round(limits.windowMs / 60_000));
  return {
    ok: false,
    reason: "rate_limited",
    message: `Too many payment prompts: at most ${limits.promptsPerWindow} in ${minutes} minutes. Please wait and try again.`,
  };
}

export interface IntentToSend {
  id: number;
  phone: string;
  amountCents: number;
  purpose: IntentPurpose;
  customerId: number | null;
  attempt: number;
  createdAt: Date;
}

/**
 * Claims up to `limit` pending, unsent intents whose turn has come, leasing each for `leaseMs`
 * (so a second dispatcher, or this one after a crash, does not send the same prompt meanwhile).
 * `skip locked` lets several dispatchers share the queue.
 */
export async function claimIntentsToSend(
  ctx: BillingContext,
  options: { limit?: number; leaseMs?: number; ids?: number[] } = {},
): Promise<IntentToSend[]> {
  const now = ctx.clock.now();
  // Longer than the slowest push (token and push requests, each with its own timeout, and a retry).
  const leaseUntil = new Date(now.getTime() + (options.leaseMs ?? 120_000));
  return ctx.db.transaction(async (tx) => {
    const due = await tx
      .select({ id: paymentIntents.id })
      .from(paymentIntents)
      .where(
        and(
          eq(paymentIntents.status, "pending"),
          isNull(paymentIntents.checkoutRequestId),
          lte(paymentIntents.nextSendAt, now),
        ),
      )
      .orderBy(asc(paymentIntents.nextSendAt))
      .limit(options.limit ?? 20)
      .for("update", { skipLocked: true });
    const claimed: IntentToSend[] = [];
    for (const { id } of due) {
      const [row] = await tx
        .update(paymentIntents)
        .set({
          nextSendAt: leaseUntil,
          sendAttempts: sql`${paymentIntents.sendAttempts} + 1`,
          updatedAt: now,
        })
        .where(eq(paymentIntents.id, id))
        .returning();
      if (row)
        claimed.push({
          id: row.id,
          phone: row.phone,
          amountCents: row.amountCents,
          purpose: row.purpose,
          customerId: row.customerId,
          attempt: row.sendAttempts,
          createdAt: row.createdAt,
        });
    }
    return claimed;
  });
}

/** Account reference shown on the customer's phone (≤ 12 characters): their account number if known. */
export async function intentAccountReference(db: Executor, intentId: number): Promise<string> {
  const [row] = await db
    .select({ account: customers.accountNumber })
    .from(paymentIntents)
    .leftJoin(customers, eq(customers.id, paymentIntents.customerId))
    .where(eq(paymentIntents.id, intentId));
  return (row?.account ?? `TD${intentId}`).slice(0, 12);
}

/** M-Pesa accepted the push: from now on the intent is identified by its CheckoutRequestID. */
export async function markIntentSent(
  ctx: BillingContext,
  input: { intentId: number; merchantRequestId: string; checkoutRequestId: string },
): Promise<void> {
  const now = ctx.clock.now();
  await ctx.db
    .update(paymentIntents)
    .set({
      merchantRequestId: input.merchantRequestId,
      checkoutRequestId: input.checkoutRequestId,
      sentAt: now,
      nextSendAt: null,
      lastError: null,
      updatedAt: now,
    })
    .where(and(eq(paymentIntents.id, input.intentId), isNull(paymentIntents.checkoutRequestId)));
}

/**
 * The push could not be sent. A transient error schedules another try at `retryAt`; otherwise (or
 * when `retryAt` is null) the intent fails and the payer gets a `payment_failed` SMS.
 */
export async function markIntentSendFailed(
  ctx: BillingContext,
  actor: Actor,
  input: { intentId: number; error: string; retryAt: Date | null },
): Promise<"retrying" | "failed" | "ignored"> {
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    if (input.retryAt) {
      const rows = await tx
        .update(paymentIntents)
        .set({ nextSendAt: input.retryAt, lastError: input.error, updatedAt: now })
        .where(
          and(
            eq(paymentIntents.id, input.intentId),
            eq(paymentIntents.status, "pending"),
            isNull(paymentIntents.checkoutRequestId),
          ),
        )
        .returning({ id: paymentIntents.id });
      return rows.length ? "retrying" : "ignored";
    }
    const [row] = await tx
      .update(paymentIntents)
      .set({
        status: "failed",
        nextSendAt: null,
        lastError: input.error,
        resultDesc: input.error,
        settledAt: now,
        updatedAt: now,
      })
      .where(
        and(
          eq(paymentIntents.id, input.intentId),
          eq(paymentIntents.status, "pending"),
          isNull(paymentIntents.checkoutRequestId),
        ),
      )
      .returning();
    if (!row) return "ignored";
    await audit(tx, actor, now, {
      action: "payment_intent.send_failed",
      entity: "payment_intent",
      entityId: row.id,
      reason: input.error,
    });
    await enqueueMessage(tx, now, {
      recipient: row.phone,
      language: await languageFor(tx, row.customerId),
      template: "payment_failed",
      params: { amountCents: row.amountCents, reason: "M-Pesa could not send the payment prompt" },
      dedupeKey: `intent:${row.id}:failed`,
    });
    return "failed";
  });
}

async function languageFor(tx: Executor, customerId: number | null): Promise<"en" | "sw"> {
  if (customerId === null) return "en";
  const [row] = await tx
    .select({ language: customers.language })
    .from(customers)
    .where(eq(customers.id, customerId));
  return row?.language ?? "en";
}

// ---------------------------------------------------------------------------------------------
// Settling: the result of a push (callback or status query) and paybill confirmations.
// ---------------------------------------------------------------------------------------------

/** The result of one STK push, as a callback or a status query reports it. */
export interface StkResult {
  checkoutRequestId: string;
  merchantRequestId?: string | null;
  resultCode: number;
  resultDesc: string;
  /** Callbacks carry the receipt and the amount paid; a status query carries neither. */
  receipt?: string | null;
  amountCents?: number | null;
  phone?: string | null;
  source: "callback" | "query";
  /** The body as received, kept in `mpesa_callbacks`. */
  raw: unknown;
}

export type SettleStatus =
  | "credited"
  | "duplicate"
  | "failed"
  | "late_failure"
  | "unknown_checkout"
  | "amount_mismatch"
  | "malformed";

export interface SettleOutcome {
  status: SettleStatus;
  intentId: number | null;
  paymentId?: number;
  intentStatus?: IntentStatus;
}

/** Result codes that mean the payer never answered, as opposed to saying no. */
const unanswered = new Set([1037, 1019]);

const failureReasons: Record<number, string> = {
  1: "Not enough money in M-Pesa",
  2: "Amount below the M-Pesa minimum",
  3: "Amount above the M-Pesa maximum",
  4: "M-Pesa daily limit reached",
  17: "Same amount paid within 2 minutes: try again later",
  1019: "The M-Pesa prompt expired",
  1032: "You cancelled the M-Pesa prompt",
  1037: "Your phone could not be reached",
  2001: "Wrong M-Pesa PIN",
};

export function failureStatus(resultCode: number): IntentStatus {
  if (resultCode === 1032) return "cancelled";
  if (unanswered.has(resultCode)) return "timed_out";
  return "failed";
}

/**
 * Settles an STK push in one transaction. The intent row is locked first, so concurrent copies of
 * one callback (or a callback racing the status query) queue behind each other and the later ones
 * see it settled; the payment's unique (provider, receipt) key makes a paybill confirmation of the
 * same receipt a duplicate too. A success is credited whatever state the intent was in (money has
 * moved), except when the amount differs from what was asked: that payment waits in the unmatched
 * queue for an admin. Failures credit nothing and tell the payer once.
 */
export async function settleStkResult(
  ctx: BillingContext,
  actor: Actor,
  result: StkResult,
): Promise<SettleOutcome> {
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const { recorded, ...outcome } = await settleInTx(tx, ctx, actor, result, now);
    if (recorded) return outcome;
    await tx.insert(mpesaCallbacks).values({
      kind: callbackKind(result),
      reference: result.checkoutRequestId,
      body: (result.raw ?? {}) as Record<string, unknown>,
      flag: callbackFlag(outcome.status),
      receivedAt: now,
    });
    return outcome;
  });
}

/**
 * Settles many STK results in one transaction (callbacks arriving together). The common case, a
 * paid callback at the asked amount for an account's balance, is credited set-based through
 * `applyPaymentsInTx`; every other result goes through the same rules as `settleStkResult`, one by
 * one. Outcomes come back in the order of `results`.
 */
export async function settleStkResults(
  ctx: BillingContext,
  actor: Actor,
  results: StkResult[],
): Promise<SettleOutcome[]> {
  if (results.length === 0) return [];
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const checkoutIds = [...new Set(results.map((r) => r.checkoutRequestId))];
    // Locked in id order, so concurrent batches over the same intents queue instead of deadlocking.
    const intents = await tx
      .select()
      .from(paymentIntents)
      .where(sql`${paymentIntents.checkoutRequestId} = any(${textArray(checkoutIds)})`)
      .orderBy(asc(paymentIntents.id))
      .for("update");
    const byCheckout = new Map(intents.map((intent) => [intent.checkoutRequestId, intent]));
    const outcomes: SettleOutcome[] = new Array(results.length);

    const bulk: { index: number; intent: IntentRow; receipt: string; result: StkResult }[] = [];
    // Repeats of a paid callback: answered as duplicates without touching anything but the log.
    const repeats: { index: number; result: StkResult; checkout: string }[] = [];
    // Only the first result for an intent can be credited in bulk: later ones must see what it did.
    const seen = new Set<string>();
    const creditedHere = new Set<string>();
    results.forEach((result, index) => {
      const checkout = result.checkoutRequestId;
      const first = !seen.has(checkout);
      seen.add(checkout);
      const intent = byCheckout.get(checkout);
      if (!intent || result.resultCode !== 0) return;
      const alreadyPaid = first && intent.paymentId !== null && intent.mpesaReceipt !== null;
      if (alreadyPaid || (!first && creditedHere.has(checkout))) {
        repeats.push({ index, result, checkout });
        return;
      }
      const plainCredit =
        first &&
        result.source === "callback" &&
        !!result.receipt &&
        intent.paymentId === null &&
        intent.customerId !== null &&
        intent.purpose === "balance" &&
        result.amountCents === intent.amountCents;
      if (!plainCredit || !result.receipt) return;
      creditedHere.add(checkout);
      bulk.push({ index, intent, receipt: result.receipt, result });
    });

    if (bulk.length > 0) {
      const credits = await applyPaymentsInTx(
        tx,
        ctx,
        actor,
        bulk.map(({ intent, receipt }) => ({
          customerId: intent.customerId!,
          method: "mpesa_stk" as const,
          provider: "mpesa",
          providerRef: receipt,
          amountCents: intent.amountCents,
          phone: intent.phone,
          receivedAt: now,
        })),
      );
      const at = now.toISOString();
      const rows = bulk.map(({ intent, receipt, result }, i) => {
        const credit = credits[i]!;
        const status: SettleStatus = credit.duplicate ? "duplicate" : "credited";
        outcomes[bulk[i]!.index] = {
          status,
          intentId: intent.id,
          paymentId: credit.paymentId,
          intentStatus: "succeeded",
        };
        return {
          id: intent.id,
          payment_id: credit.paymentId,
          receipt,
          result_desc: result.resultDesc,
          outcome: credit.restoredSubscriptionIds.length
            ? { restoredSubscriptionIds: credit.restoredSubscriptionIds }
            : {},
          checkout: result.checkoutRequestId,
          body: result.raw ?? {},
          flag: callbackFlag(status),
        };
      });
      // The whole batch travels as one JSON parameter.
      await tx.execute(sql`
        with data as (
          select * from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as d(id int, payment_id int, receipt text,
            result_desc text, outcome jsonb, checkout text, body jsonb, flag text)
        ),
        settled as (
          update payment_intents p set status = 'succeeded', result_code = 0, result_desc = d.result_desc,
            mpesa_receipt = d.receipt, payment_id = d.payment_id, outcome = d.outcome,
            settled_at = ${at}::timestamptz, updated_at = ${at}::timestamptz
          from data d where p.id = d.id
          returning p.id)
        insert into mpesa_callbacks (kind, reference, body, flag, received_at)
        select 'stk', d.checkout, d.body, d.flag, ${at}::timestamptz from data d`);
    }

    if (repeats.length > 0) {
      const paidIntents = new Map(
        (
          await tx
            .select({
              checkout: paymentIntents.checkoutRequestId,
              id: paymentIntents.id,
              paymentId: paymentIntents.paymentId,
              status: paymentIntents.status,
            })
            .from(paymentIntents)
            .where(
              sql`${paymentIntents.checkoutRequestId} = any(${textArray([...new Set(repeats.map((r) => r.checkout))])})`,
            )
        ).map((row) => [row.checkout, row]),
      );
      for (const { index, checkout } of repeats) {
        const paid = paidIntents.get(checkout)!;
        outcomes[index] = {
          status: "duplicate",
          intentId: paid.id,
          paymentId: paid.paymentId ?? undefined,
          intentStatus: paid.status,
        };
      }
      await tx.insert(mpesaCallbacks).values(
        repeats.map(({ result }) => ({
          kind: callbackKind(result),
          reference: result.checkoutRequestId,
          body: (result.raw ?? {}) as Record<string, unknown>,
          flag: callbackFlag("duplicate"),
          receivedAt: now,
        })),
      );
    }

    for (let index = 0; index < results.length; index++) {
      if (outcomes[index]) continue;
      const result = results[index]!;
      const { recorded, ...outcome } = await settleInTx(tx, ctx, actor, result, now);
      if (!recorded) {
        await tx.insert(mpesaCallbacks).values({
          kind: callbackKind(result),
          reference: result.checkoutRequestId,
          body: (result.raw ?? {}) as Record<string, unknown>,
          flag: callbackFlag(outcome.status),
          receivedAt: now,
        });
      }
      outcomes[index] = outcome;
    }
    return outcomes;
  });
}

const callbackKind = (result: StkResult): "stk" | "stk_query" =>
  result.source === "query" ? "stk_query" : "stk";

function callbackFlag(status: SettleStatus): string | null {
  switch (status) {
    case "credited":
    case "failed":
      return null;
    default:
      return status;
  }
}

async function settleInTx(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  result: StkResult,
  now: Date,
): Promise<SettleOutcome & { recorded?: boolean }> {
  const [intent] = await tx
    .select()
    .from(paymentIntents)
    .where(eq(paymentIntents.checkoutRequestId, result.checkoutRequestId))
    .for("update");
  if (!intent) return { status: "unknown_checkout", intentId: null };

  if (result.resultCode !== 0) {
    if (intent.status !== "pending")
      return { status: "late_failure", intentId: intent.id, intentStatus: intent.status };
    const status = failureStatus(result.resultCode);
    await tx
      .update(paymentIntents)
      .set({
        status,
        resultCode: result.resultCode,
        resultDesc: result.resultDesc,
        settledAt: now,
        updatedAt: now,
      })
      .where(eq(paymentIntents.id, intent.id));
    await tellFailure(tx, now, intent, failureReasons[result.resultCode] ?? result.resultDesc);
    await audit(tx, actor, now, {
      action: `payment_intent.${status}`,
      entity: "payment_intent",
      entityId: intent.id,
      details: { resultCode: result.resultCode, resultDesc: result.resultDesc, source: result.source },
    });
    return { status: "failed", intentId: intent.id, intentStatus: status };
  }

  if (intent.paymentId !== null) {
    if (result.receipt && !intent.mpesaReceipt)
      await tx
        .update(paymentIntents)
        .set({ mpesaReceipt: result.receipt, updatedAt: now })
        .where(eq(paymentIntents.id, intent.id));
    return {
      status: "duplicate",
      intentId: intent.id,
      paymentId: intent.paymentId,
      intentStatus: intent.status,
    };
  }

  // A status query says "paid" without a receipt or an amount: the intent's amount was asked and
  // M-Pesa does not take partial payments, so that is what was paid.
  const receipt = result.receipt ?? null;
  let amountCents = result.amountCents ?? null;
  if (result.source === "query") {
    amountCents = intent.amountCents;
  } else if (!receipt || amountCents === null || amountCents <= 0) {
    return { status: "malformed", intentId: intent.id };
  }
  const providerRef = receipt ?? `stk:${result.checkoutRequestId}`;
  const paid = amountCents as number;
  const payer = intent.phone;

  if (paid !== intent.amountCents) {
    const paymentId = await recordUncreditedPaymentInTx(
      tx,
      now,
      {
        method: "mpesa_stk",
        provider: "mpesa",
        providerRef,
        amountCents: paid,
        phone: payer,
        accountReference: `intent ${intent.id}`,
      },
      "unmatched",
    );
    await tx
      .update(paymentIntents)
      .set({
        status: "failed",
        resultCode: 0,
        resultDesc: `Paid ${formatKes(paid)} instead of ${formatKes(intent.amountCents)}: held for review`,
        mpesaReceipt: receipt,
        paymentId,
        settledAt: now,
        updatedAt: now,
      })
      .where(eq(paymentIntents.id, intent.id));
    await audit(tx, actor, now, {
      action: "payment_intent.amount_mismatch",
      entity: "payment_intent",
      entityId: intent.id,
      details: { paidCents: paid, askedCents: intent.amountCents, receipt },
    });
    return { status: "amount_mismatch", intentId: intent.id, paymentId: paymentId ?? undefined };
  }

  const credit = await creditIntent(tx, ctx, actor, intent, { providerRef, amountCents: paid, now });
  const outcome: SettleOutcome = {
    status: credit.duplicate ? "duplicate" : "credited",
    intentId: intent.id,
    paymentId: credit.paymentId ?? undefined,
    intentStatus: "succeeded",
  };
  // The hot path of every paid callback: the intent's new state and the callback record go in one
  // statement (the payment's own audit entry already says who credited what).
  await tx.execute(sql`
    with settled as (
      update payment_intents set status = 'succeeded', result_code = 0, result_desc = ${result.resultDesc},
        mpesa_receipt = ${receipt}, payment_id = ${credit.paymentId}, outcome = ${JSON.stringify(credit.outcome)}::jsonb,
        settled_at = ${now.toISOString()}::timestamptz, updated_at = ${now.toISOString()}::timestamptz
      where id = ${intent.id}
      returning id)
    insert into mpesa_callbacks (kind, reference, body, flag, received_at)
    select ${callbackKind(result)}, ${result.checkoutRequestId}, ${JSON.stringify(result.raw ?? {})}::jsonb,
      ${callbackFlag(outcome.status)}, ${now.toISOString()}::timestamptz
    from settled`);
  return { ...outcome, recorded: true };
}

type IntentRow = typeof paymentIntents.$inferSelect;

/** Credits the payment and carries out what it was for, once per intent. */
async function creditIntent(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  intent: IntentRow,
  payment: { providerRef: string; amountCents: number; now: Date },
): Promise<{ paymentId: number | null; duplicate: boolean; outcome: Record<string, unknown> }> {
  if (intent.purpose === "voucher" || intent.customerId === null) {
    // A voucher is a sale, not a credit to an account (a walk-in buyer has none): the payment is
    // recorded without a ledger entry. Anything else without an account waits for an admin.
    const paymentId = await recordUncreditedPaymentInTx(
      tx,
      payment.now,
      {
        method: "mpesa_stk",
        provider: "mpesa",
        providerRef: payment.providerRef,
        amountCents: payment.amountCents,
        phone: intent.phone,
        accountReference: intent.purpose === "voucher" ? `voucher ${intent.id}` : `intent ${intent.id}`,
      },
      intent.purpose === "voucher" ? "applied" : "unmatched",
    );
    if (paymentId !== null)
      return { paymentId, duplicate: false, outcome: await followUp(tx, ctx, actor, intent) };
    // The same receipt came first as a paybill confirmation naming no account (the push's
    // reference): it is this sale, so it leaves the unmatched queue instead of being paid out twice.
    const [claimed] =
      intent.purpose === "voucher"
        ? await tx
            .update(payments)
            .set({ status: "applied", accountReference: `voucher ${intent.id}` })
            .where(
              and(
                eq(payments.provider, "mpesa"),
                eq(payments.providerRef, payment.providerRef),
                eq(payments.status, "unmatched"),
                eq(payments.amountCents, payment.amountCents),
              ),
            )
            .returning({ id: payments.id })
        : [];
    if (claimed)
      return { paymentId: claimed.id, duplicate: true, outcome: await followUp(tx, ctx, actor, intent) };
    return { paymentId: null, duplicate: true, outcome: { followUpError: "receipt already recorded" } };
  }
  const applied = await applyPaymentInTx(tx, ctx, actor, {
    customerId: intent.customerId,
    method: "mpesa_stk",
    provider: "mpesa",
    providerRef: payment.providerRef,
    amountCents: payment.amountCents,
    phone: intent.phone,
    receivedAt: payment.now,
  });
  const outcome = await followUp(tx, ctx, actor, intent);
  if (applied.restoredSubscriptionIds.length)
    outcome.restoredSubscriptionIds = applied.restoredSubscriptionIds;
  return { paymentId: applied.paymentId, duplicate: applied.duplicate, outcome };
}

/**
 * What the payment was for. It runs in a savepoint: if the plan change is no longer possible (the
 * plan was retired meanwhile, say), the money stays on the account as credit and the reason is kept.
 */
async function followUp(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  intent: IntentRow,
): Promise<Record<string, unknown>> {
  if (intent.purpose === "balance") return {};
  try {
    return await tx.transaction(async (sp) => {
      if (intent.purpose === "plan_change" && intent.subscriptionId !== null && intent.planId !== null) {
        const quote = await changePlanInTx(sp, ctx, actor, {
          subscriptionId: intent.subscriptionId,
          planId: intent.planId,
        });
        return {
          planChange: quote.kind,
          chargeCents: quote.chargeCents,
          effectiveAt: quote.effectiveAt.toISOString(),
        };
      }
      if (intent.purpose === "voucher" && intent.planId !== null) {
        const voucher = await sellVoucherInTx(sp, ctx, actor, {
          planId: intent.planId,
          phone: intent.phone,
          language: await languageFor(sp, intent.customerId),
        });
        return { voucherId: voucher.voucherId };
      }
      return {};
    });
  } catch (error) {
    if (!(error instanceof BillingError)) throw error;
    return { followUpError: error.message, followUpCode: error.code };
  }
}

async function tellFailure(tx: Executor, now: Date, intent: IntentRow, reason: string): Promise<void> {
  await enqueueMessage(tx, now, {
    recipient: intent.phone,
    language: await languageFor(tx, intent.customerId),
    template: "payment_failed",
    params: { amountCents: intent.amountCents, reason },
    dedupeKey: `intent:${intent.id}:failed`,
  });
}

/** Pushes sent at least `olderThanMs` ago whose result is still unknown. */
export async function listIntentsAwaitingResult(
  db: Executor,
  now: Date,
  olderThanMs: number,
  limit = 100,
): Promise<{ id: number; checkoutRequestId: string; sentAt: Date }[]> {
  const rows = await db
    .select({
      id: paymentIntents.id,
      checkoutRequestId: paymentIntents.checkoutRequestId,
      sentAt: paymentIntents.sentAt,
    })
    .from(paymentIntents)
    .where(
      and(
        eq(paymentIntents.status, "pending"),
        isNotNull(paymentIntents.checkoutRequestId),
        lte(paymentIntents.sentAt, new Date(now.getTime() - olderThanMs)),
      ),
    )
    .orderBy(asc(paymentIntents.sentAt))
    .limit(limit);
  return rows.map((r) => ({ id: r.id, checkoutRequestId: r.checkoutRequestId!, sentAt: r.sentAt! }));
}

/** M-Pesa never gave an answer: the intent times out (a success that comes later is still credited). */
export async function timeOutIntent(ctx: BillingContext, actor: Actor, intentId: number): Promise<boolean> {
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const [row] = await tx
      .update(paymentIntents)
      .set({ status: "timed_out", resultDesc: "No answer from M-Pesa", settledAt: now, updatedAt: now })
      .where(and(eq(paymentIntents.id, intentId), eq(paymentIntents.status, "pending")))
      .returning();
    if (!row) return false;
    await tellFailure(tx, now, row, "No answer from M-Pesa");
    await audit(tx, actor, now, {
      action: "payment_intent.timed_out",
      entity: "payment_intent",
      entityId: row.id,
    });
    return true;
  });
}

export interface C2bConfirmation {
  transId: string;
  billRef: string;
  amountCents: number;
  payerName?: string;
  receivedAt?: Date;
  raw: unknown;
}

/**
 * A paybill/till payment made from the phone's menu. The account typed by the payer decides whose
 * it is; an unknown one waits in the unmatched queue. The MSISDN arrives masked, so it is not used.
 */
export async function recordC2bConfirmation(
  ctx: BillingContext,
  actor: Actor,
  input: C2bConfirmation,
): Promise<{ paymentId: number; duplicate: boolean; matched: boolean; customerId: number | null }> {
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const recorded = await recordPaymentByReferenceInTx(tx, ctx, actor, {
      reference: input.billRef,
      method: "mpesa_c2b",
      provider: "mpesa",
      providerRef: input.transId,
      amountCents: input.amountCents,
      payerName: input.payerName,
      receivedAt: input.receivedAt ?? now,
    });
    await tx.insert(mpesaCallbacks).values({
      kind: "c2b_confirmation",
      reference: input.transId,
      body: (input.raw ?? {}) as Record<string, unknown>,
      flag: recorded.duplicate ? "duplicate" : recorded.matched ? null : "unmatched",
      receivedAt: now,
    });
    return recorded;
  });
}

/**
 * Callbacks that arrived for this checkout id before the dispatcher had recorded it (M-Pesa can
 * answer faster than the push's own response is stored); the dispatcher settles them again.
 */
export async function callbacksBeforeSend(db: Executor, checkoutRequestId: string): Promise<unknown[]> {
  const rows = await db
    .select({ body: mpesaCallbacks.body })
    .from(mpesaCallbacks)
    .where(
      and(
        eq(mpesaCallbacks.kind, "stk"),
        eq(mpesaCallbacks.reference, checkoutRequestId),
        eq(mpesaCallbacks.flag, "unknown_checkout"),
      ),
    );
  return rows.map((r) => r.body);
}

/** Records a callback that could not be settled (unparseable, or settling failed) for an admin. */
export async function recordUnsettledCallback(
  db: Executor,
  now: Date,
  input: {
    kind: "stk" | "c2b_validation" | "c2b_confirmation";
    reference: string | null;
    raw: unknown;
    flag: string;
  },
): Promise<void> {
  await db.insert(mpesaCallbacks).values({
    kind: input.kind,
    reference: input.reference,
    body: (input.raw ?? {}) as Record<string, unknown>,
    flag: input.flag,
    receivedAt: now,
  });
}
