import { eq, type SQL, sql } from "drizzle-orm";
import { queryRows } from "../../db/client.ts";
import { type IntentPurpose, type Language, paymentIntents } from "../../db/schema/index.ts";
import { isKenyanMobile, normalizePhone } from "../../lib/phone.ts";
import { audit } from "../audit.ts";
import type { Actor, BillingContext } from "../context.ts";
import { onceUnderKey } from "../idempotency.ts";
import { formatKes, toWholeShillingsUp } from "../money.ts";
import { takeSlotSql } from "../rate-windows.ts";
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
  /** Prompts allowed per target account within `windowMs`, whichever phone or channel asks. */
  perAccount: number;
  /**
   * Prompts allowed per source within `windowMs` (see `PaymentRequest.sourceId`): sized for everyone
   * who shares one, and a limit that a payer who changes or leaves out the session id still meets.
   */
  perSource: number;
  /** Prompts allowed in total per minute: a stranger cannot prompt fifty phones in a second. */
  totalPerMinute: number;
  /**
   * Prompts to a number paying for someone else's account, per number and per account, within
   * `onBehalfWindowMs`: few, and counted apart from the number's own prompts, so that nobody can
   * flood strangers with prompts for their account, nor use up a customer's own room to pay.
   */
  onBehalfPerPhone: number;
  onBehalfPerAccount: number;
  onBehalfWindowMs: number;
  amounts: Record<IntentPurpose, AmountBounds>;
}

/** M-Pesa's own single-transaction limits are KES 1 to KES 250,000; a voucher never costs that much. */
export const defaultPaymentLimits: PaymentLimits = {
  promptsPerWindow: 3,
  windowMs: 5 * 60_000,
  perAccount: 5,
  perSource: 30,
  totalPerMinute: 120,
  onBehalfPerPhone: 3,
  onBehalfPerAccount: 3,
  onBehalfWindowMs: 24 * 3_600_000,
  amounts: {
    balance: { minCents: 100, maxCents: 150_000_00 },
    voucher: { minCents: 100, maxCents: 20_000_00 },
    plan_change: { minCents: 100, maxCents: 150_000_00 },
  },
};

/** The sliding windows a prompt must find room in; a refusal names the one that was full. */
type PromptWindow = "phone" | "session" | "source" | "account" | "total";

export interface PaymentRequest {
  phone: string;
  purpose: IntentPurpose;
  amountCents: number;
  customerId?: number;
  planId?: number;
  subscriptionId?: number;
  channel: string;
  channelSessionId?: string;
  /** The hotspot a voucher is bought at: its code is made for that router alone. */
  routerId?: number;
  /**
   * Where the request came from, as the channel can tell and the payer cannot choose (e.g. one
   * network address that a whole site shares): counted under `perSource`.
   */
  sourceId?: string;
  /** The prompt goes to a number paying for the customer, not the customer's own (see `onBehalfPerPhone`). */
  onBehalf?: boolean;
  /** The payer's language in the menu: a visitor's voucher code and failure notices are sent in it. */
  language?: Language;
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
  return e164 && isKenyanMobile(e164) ? e164 : null;
}

const invalid = (message: string): RequestPaymentResult => ({ ok: false, reason: "invalid", message });

/**
 * Records a pending STK intent after the abuse limits; does not talk to M-Pesa (the dispatcher
 * sends it right after). Each window's slot is taken by an upsert that counts the window again under
 * its row's lock, so the limits hold under races too.
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
  const sourceKey = input.sourceId !== undefined ? `stk-source:${input.channel}:${input.sourceId}` : null;
  const lastMinute = new Date(now.getTime() - 60_000).toISOString();
  const hitsSince = (
    key: SQL,
    from: string,
  ) => sql`(select count(*) from rate_limit_windows w, unnest(w.hits) as h
      where w.key = ${key} and h > ${from}::timestamptz)`;
  // Takes a slot under `key` (an expression over `source`, aliased `s`) for each row of `source`
  // (one row when the previous checks passed), unless `limit` hits since `from` fill it.
  const window = (key: SQL, source: SQL, limit: number, from = since) =>
    takeSlotSql({ key, source, limit, from, at });
  // A prompt on someone's behalf counts in windows of its own (see `onBehalfPerPhone`).
  const onBehalfSince = new Date(now.getTime() - limits.onBehalfWindowMs).toISOString();
  const phoneWindow = input.onBehalf
    ? { key: `stk-behalf:${phone}`, limit: limits.onBehalfPerPhone, from: onBehalfSince }
    : { key: `stk-phone:${phone}`, limit: limits.promptsPerWindow, from: since };
  const accountWindow = input.onBehalf
    ? { prefix: "stk-behalf-account:", limit: limits.onBehalfPerAccount, from: onBehalfSince }
    : { prefix: "stk-account:", limit: limits.perAccount, from: since };
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
    earlier_plan_id: number | null;
    earlier_customer_id: number | null;
    earlier_subscription_id: number | null;
    full_window: PromptWindow | null;
    refusal_audited: boolean;
  }>(
    ctx.db,
    sql`
    with claim as (${once.claim}),
    checks as (
      select
        (select customer_id from subscriptions where id = ${sub}::int) as sub_customer,
        (select active and (${input.purpose} <> 'voucher' or kind = 'hotspot') from plans where id = ${plan}::int) as plan_active,
        (select id from customers where id = ${customer}::int) as customer
    ),
    earlier as (select id, purpose, amount_cents, phone, plan_id, customer_id, subscription_id
                from payment_intents where idempotency_key = ${key}::text),
    valid as (
      select coalesce(${customer}::int, c.sub_customer) as customer_id from checks c
      where (${sub}::int is null or (c.sub_customer is not null and (${customer}::int is null or ${customer}::int = c.sub_customer)))
        and (${plan}::int is null or c.plan_active)
        and (${sub}::int is not null or ${customer}::int is null or c.customer is not null)
        and ${once.first(sql`claim`)}
        and not exists (select 1 from earlier)
    ),
    room as (
      select
        ${hitsSince(sql`${phoneWindow.key}::text`, phoneWindow.from)} < ${phoneWindow.limit} as phone_ok,
        (${sessionKey}::text is null or ${hitsSince(sql`${sessionKey}::text`, since)} < ${limits.promptsPerWindow}) as session_ok,
        (${sourceKey}::text is null or ${hitsSince(sql`${sourceKey}::text`, since)} < ${limits.perSource}) as source_ok,
        (v.customer_id is null or ${hitsSince(sql`${accountWindow.prefix}::text || v.customer_id`, accountWindow.from)} < ${accountWindow.limit}) as account_ok,
        ${hitsSince(sql`'stk-total'::text`, lastMinute)} < ${limits.totalPerMinute} as total_ok
      from valid v
    ),
    -- Every limit is checked before any slot is taken: a refused prompt uses up nobody's room (unless
    -- a prompt running beside it fills a later window first: the earlier windows keep its try).
    fits as (select 1 from room where phone_ok and session_ok and source_ok and account_ok and total_ok),
    phone_slot as (${window(sql`${phoneWindow.key}::text`, sql`fits`, phoneWindow.limit, phoneWindow.from)}),
    session_slot as (${sessionKey ? window(sql`${sessionKey}::text`, sql`phone_slot`, limits.promptsPerWindow) : sql`select key from phone_slot`}),
    source_slot as (${sourceKey ? window(sql`${sourceKey}::text`, sql`session_slot`, limits.perSource) : sql`select key from session_slot`}),
    account_slot as (${window(
      sql`${accountWindow.prefix}::text || s.customer_id`,
      sql`(select v.customer_id from valid v where v.customer_id is not null and exists (select 1 from source_slot))`,
      accountWindow.limit,
      accountWindow.from,
    )}),
    passed as (
      select 1 from source_slot
      where (select customer_id from valid) is null or exists (select 1 from account_slot)
    ),
    total_slot as (${window(sql`'stk-total'::text`, sql`passed`, limits.totalPerMinute, lastMinute)}),
    inserted as (
      insert into payment_intents (customer_id, phone, purpose, amount_cents, plan_id, subscription_id, channel,
        channel_session_id, router_id, language, idempotency_key, status, next_send_at, created_at, updated_at)
      select v.customer_id, ${phone}, ${input.purpose}, ${amountCents}, ${plan}::int, ${sub}::int, ${input.channel},
        ${input.channelSessionId ?? null}::text, ${input.routerId ?? null}::int, ${input.language ?? null}::text, ${key}::text, 'pending', ${at}::timestamptz, ${at}::timestamptz, ${at}::timestamptz
      from valid v
      where exists (select 1 from total_slot)
      on conflict (idempotency_key) do nothing
      returning id
    ),
    audited as (
      insert into audit_log (actor_kind, actor_id, channel, action, entity, entity_id, details, at)
      select ${actor.kind}, ${actor.id}, ${actor.channel ?? null}::text, 'payment_intent.requested', 'payment_intent',
        id::text, ${details}::jsonb, ${at}::timestamptz
      from inserted
    ),
    -- The window that refused a valid request: full when read, or, when every window had room as
    -- read, the one whose last slot a request running at the same moment took.
    full_window as (
      select coalesce(
        (select case when not phone_ok then 'phone' when not session_ok then 'session'
                     when not source_ok then 'source' when not account_ok then 'account' when not total_ok then 'total' end from room),
        case when not exists (select 1 from phone_slot) then 'phone'
             when not exists (select 1 from session_slot) then 'session'
             when not exists (select 1 from source_slot) then 'source'
             when not exists (select 1 from passed) then 'account'
             when not exists (select 1 from total_slot) then 'total' end) as name
      from valid
    ),
    -- A valid request that recorded no intent was refused by a window: audited here, so a refusal
    -- (a burst of them is someone trying the limits) costs no statement of its own.
    refusal_audited as (
      insert into audit_log (actor_kind, actor_id, channel, action, entity, entity_id, reason, details, at)
      select ${actor.kind}, ${actor.id}, ${actor.channel ?? null}::text, 'payment_intent.refused', 'phone',
        ${phone}::text, 'rate_limited',
        jsonb_build_object('phone', ${phone}::text, 'purpose', ${input.purpose}::text, 'customerId', v.customer_id,
          'channel', ${input.channel}::text, 'limit', coalesce((select name from full_window), 'phone'),
          'idempotencyKey', ${key}::text),
        ${at}::timestamptz
      from valid v
      where not exists (select 1 from inserted)
      returning id
    )
    select c.sub_customer, c.plan_active, c.customer, (select id from inserted) as id, ${once.first(sql`claim`)} as first,
      (select name from full_window) as full_window,
      exists (select 1 from refusal_audited) as refusal_audited,
      e.id as earlier_id, e.purpose as earlier_purpose, e.amount_cents as earlier_amount_cents, e.phone as earlier_phone,
      e.plan_id as earlier_plan_id, e.customer_id as earlier_customer_id,
      e.subscription_id as earlier_subscription_id
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
              planId: row.earlier_plan_id,
              customerId: row.earlier_customer_id,
              subscriptionId: row.earlier_subscription_id,
            },
          ]
        : await ctx.db
            .select({
              id: paymentIntents.id,
              purpose: paymentIntents.purpose,
              amountCents: paymentIntents.amountCents,
              phone: paymentIntents.phone,
              planId: paymentIntents.planId,
              customerId: paymentIntents.customerId,
              subscriptionId: paymentIntents.subscriptionId,
            })
            .from(paymentIntents)
            .where(eq(paymentIntents.idempotencyKey, key));
    if (earlier) {
      // The package too: two packages can cost the same, and answering with the first would sell
      // the payer a package other than the one they now asked for. So the account and subscription
      // it pays (a subscription's customer is its own, so only a customer named is compared).
      const idOf = (id: number | string | null) => (id === null ? null : Number(id));
      const same =
        earlier.purpose === input.purpose &&
        Number(earlier.amountCents) === amountCents &&
        earlier.phone === phone &&
        idOf(earlier.planId) === plan &&
        idOf(earlier.subscriptionId) === sub &&
        (customer === null || idOf(earlier.customerId) === customer);
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
  let fullWindow = row?.full_window ?? null;
  // Refusals are audited: a burst of them is someone trying the limits. The statement audited it
  // unless it saw no valid request: a repeat of a key whose first request was refused, which is
  // refused, and audited, by the window that refused the first.
  if (!row?.refusal_audited) {
    if (key !== null) fullWindow = (await windowThatRefused(ctx, phone, key)) ?? fullWindow;
    await audit(ctx.db, actor, now, {
      action: "payment_intent.refused",
      entity: "phone",
      entityId: phone,
      reason: "rate_limited",
      details: {
        phone,
        purpose: input.purpose,
        customerId: row?.sub_customer != null ? Number(row.sub_customer) : customer,
        channel: input.channel,
        limit: fullWindow ?? "phone",
        idempotencyKey: key,
      },
    });
  }
  return {
    ok: false,
    reason: "rate_limited",
    message:
      fullWindow === "total"
        ? "We are receiving many payment requests right now. Please try again in a minute."
        : input.onBehalf && (fullWindow === "account" || fullWindow === "phone" || fullWindow === null)
          ? `Too many payment prompts to other numbers: at most ${limits.onBehalfPerPhone} to one number and ${limits.onBehalfPerAccount} for one account in ${Math.round(limits.onBehalfWindowMs / 3_600_000)} hours.`
          : fullWindow === "source"
            ? `Too many payment prompts from this connection: at most ${limits.perSource} in ${minutes} minutes. Please wait and try again.`
            : fullWindow === "account"
              ? `Too many payment prompts for this account: at most ${limits.perAccount} in ${minutes} minutes. Please wait and try again.`
              : `Too many payment prompts: at most ${limits.promptsPerWindow} in ${minutes} minutes. Please wait and try again.`,
  };
}

/** The window named by the first refusal of a prompt under `key` from `phone`, if it was refused. */
async function windowThatRefused(ctx: BillingContext, phone: string, key: string) {
  const [first] = await queryRows<{ name: PromptWindow | null }>(
    ctx.db,
    sql`select details->>'limit' as name from audit_log
        where entity = 'phone' and entity_id = ${phone} and action = 'payment_intent.refused'
          and details->>'idempotencyKey' = ${key}
        order by id limit 1`,
  );
  return first?.name ?? null;
}
