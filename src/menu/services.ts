import { and, asc, eq, sql } from "drizzle-orm";
import { getAccountSummary } from "../billing/accounts.ts";
import { isClosedToPayments } from "../billing/closed-accounts.ts";
import { type Actor, type BillingContext, BillingError } from "../billing/context.ts";
import { onceUnderKey } from "../billing/idempotency.ts";
import {
  type PaymentRequest,
  type RequestPaymentResult,
  requestPayment,
} from "../billing/intents/request.ts";
import { changePlan } from "../billing/plan-change.ts";
import { type PlanChangeQuote, quotePlanChange } from "../billing/plan-change-quote.ts";
import { setCustomerLanguage } from "../billing/preferences.ts";
import { selfSignUp } from "../billing/self-signup.ts";
import { recentVouchersSoldTo } from "../billing/vouchers-bought.ts";
import { type Executor, queryRows } from "../db/client.ts";
import { type PlanKind, plans } from "../db/schema/index.ts";
import type {
  Language,
  MenuServices,
  MenuSession,
  MenuUser,
  Outcome,
  PlanView,
  QuoteView,
  Refusal,
  ShownPlans,
} from "./types.ts";

const subscriberActor = (user: MenuUser, session: MenuSession): Actor => ({
  kind: "subscriber",
  id: user.phone,
  channel: session.channel,
});

const planView = (p: typeof plans.$inferSelect): PlanView => ({
  id: p.id,
  name: p.name,
  nameSw: p.nameSw ?? null,
  kind: p.kind,
  priceCents: p.priceCents,
  periodUnit: p.periodUnit,
  periodCount: p.periodCount,
  dataCapBytes: p.dataCapBytes ?? null,
});

function quoteView(q: PlanChangeQuote): QuoteView {
  return {
    kind: q.kind,
    chargeCents: q.chargeCents,
    creditCents: q.creditCents,
    payableCents: q.payableCents,
    effectiveAt: q.effectiveAt,
    immediate: q.immediate,
    withNextPayment: q.withNextPayment,
    toPlan: planView(q.toPlan),
  };
}

async function refusing<T>(work: () => Promise<T>): Promise<T | Refusal> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof BillingError) return { ok: false, reason: error.code, message: error.message };
    throw error;
  }
}

/**
 * The state that pins a visitor's session (see loadMenuUser). Not for a chat without a phone: "" is
 * nobody's number, and when the chat is linked to an account later its menu must follow.
 */
const visitorPin = (user: MenuUser) =>
  !user.customer && user.phone ? JSON.stringify({ visitor: true }) : "{}";

export interface LoadedUser {
  user: MenuUser;
  recorded: Record<string, Outcome | "pending">;
  /** The plan lists this session was shown (see MenuSession.plans); unset where they are not kept. */
  plans?: ShownPlans;
}

/** postgres.js hands jsonb over as text, PGlite as a value. */
const jsonValue = <T>(value: T | string | null | undefined, empty: T): T =>
  typeof value === "string" ? (JSON.parse(value) as T) : (value ?? empty);

/**
 * The dialling number's customer, language and this session's recorded outcomes, in one round trip:
 * every request of a menu conversation starts with this.
 *
 * A session in which a visitor confirmed something (a sign-up, a language) stays a visitor's: its
 * inputs are replayed through the visitor's menu on every request, and once the sign-up has made the
 * phone a customer, the customer's menu would read the same inputs as other choices (`2` is "Pay").
 */
export async function loadMenuUser(db: Executor, phone: string, sessionId: string): Promise<LoadedUser> {
  const [row] = await queryRows<{
    id: number | null;
    account_number: string | null;
    name: string | null;
    language: Language | null;
    session_language: Language | null;
    effects: Record<string, Outcome | "pending"> | string | null;
    plans: ShownPlans | string | null;
    visitor: boolean | null;
  }>(
    db,
    sql`select c.id, c.account_number, c.name, c.language, s.language as session_language, s.state -> 'effects' as effects,
               s.state -> 'plans' as plans, (s.state ->> 'visitor') = 'true' as visitor
        from (select 1) as one
        left join customers c on c.phone = ${phone}
        left join channel_sessions s on s.id = ${sessionId}`,
  );
  const customer =
    row?.id !== null && row?.id !== undefined && row.visitor !== true
      ? { id: Number(row.id), accountNumber: row.account_number ?? "", name: row.name ?? "" }
      : null;
  const language = (customer ? row?.language : row?.session_language) ?? "en";
  return {
    user: { phone, language, customer },
    recorded: jsonValue(row?.effects, {}),
    plans: jsonValue(row?.plans, {}),
  };
}

export interface MenuServiceOptions {
  /** Plans change rarely; the lists are kept this long so a busy menu does not reread them. */
  planCacheMs?: number;
  /**
   * Records the STK intent. Default: the billing core's `requestPayment` (the dispatcher picks it up
   * on its next poll); `Payments.request` also wakes the dispatcher at once and applies configured limits.
   */
  requestPayment?: (actor: Actor, input: PaymentRequest) => Promise<RequestPaymentResult>;
}

/** The menu's view of the billing core and of the session store. */
export function createMenuServices(ctx: BillingContext, options: MenuServiceOptions = {}): MenuServices {
  const planCacheMs = options.planCacheMs ?? 5_000;
  const record =
    options.requestPayment ?? ((actor: Actor, input: PaymentRequest) => requestPayment(ctx, actor, input));
  const planCache = new Map<PlanKind, { at: number; plans: Promise<PlanView[]> }>();

  async function recordedOutcome(
    session: MenuSession,
    step: number,
  ): Promise<Outcome | "pending" | undefined> {
    const [row] = await queryRows<{ outcome: Outcome | "pending" | string | null }>(
      ctx.db,
      sql`select state -> 'effects' -> ${String(step)}::text as outcome from channel_sessions where id = ${session.id}`,
    );
    const outcome = row?.outcome;
    if (outcome === null || outcome === undefined) return undefined;
    // postgres.js hands jsonb over as text, PGlite as a value.
    return (typeof outcome === "string" && outcome !== "pending" ? JSON.parse(outcome) : outcome) as
      | Outcome
      | "pending";
  }

  return {
    async account(customerId) {
      const now = ctx.clock.now();
      const s = await getAccountSummary(ctx.db, customerId, now);
      return {
        accountNumber: s.customer.accountNumber,
        subscriptionId: s.subscription?.id ?? null,
        status: s.subscription?.status ?? null,
        plan: s.plan ? planView(s.plan) : null,
        periodEnd: s.periodEnd,
        periodEnded: s.periodEnd !== null && s.periodEnd.getTime() <= now.getTime(),
        balanceCents: s.balanceCents,
        amountDueCents: s.amountDueCents,
        lastPayment: s.lastPayment
          ? { amountCents: s.lastPayment.amountCents, receivedAt: s.lastPayment.receivedAt }
          : null,
        closed: isClosedToPayments(s.customer),
      };
    },

    plans(kind) {
      const now = Date.now();
      const cached = planCache.get(kind);
      if (cached && now - cached.at < planCacheMs) return cached.plans;
      const loading = ctx.db
        .select()
        .from(plans)
        .where(and(eq(plans.kind, kind), eq(plans.active, true)))
        .orderBy(asc(plans.priceCents), asc(plans.id))
        .then((rows) => rows.map(planView));
      planCache.set(kind, { at: now, plans: loading });
      loading.catch(() => planCache.delete(kind));
      return loading;
    },

    quotePlanChange(subscriptionId, planId) {
      return refusing(async () => quoteView(await quotePlanChange(ctx.db, ctx, { subscriptionId, planId })));
    },

    vouchersBought(phone) {
      return recentVouchersSoldTo(ctx.db, phone, ctx.clock.now());
    },

    async requestPayment(user, session, request) {
      return record(subscriberActor(user, session), {
        phone: request.payerPhone ?? user.phone,
        ...(request.payerPhone !== undefined ? { onBehalf: true } : {}),
        purpose: request.purpose,
        amountCents: request.amountCents,
        ...(user.customer ? { customerId: user.customer.id } : {}),
        ...(request.planId !== undefined ? { planId: request.planId } : {}),
        ...(request.subscriptionId !== undefined ? { subscriptionId: request.subscriptionId } : {}),
        ...(request.idempotencyKey !== undefined ? { idempotencyKey: request.idempotencyKey } : {}),
        channel: session.channel,
        channelSessionId: session.id,
        language: user.language,
      });
    },

    changePlan(user, session, subscriptionId, planId) {
      return refusing(async () =>
        quoteView(await changePlan(ctx, subscriberActor(user, session), { subscriptionId, planId })),
      );
    },

    async setLanguage(user, session, language, idempotencyKey) {
      if (user.customer) {
        await setCustomerLanguage(ctx, subscriberActor(user, session), {
          customerId: user.customer.id,
          language,
          ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
        });
        return;
      }
      const at = ctx.clock.now().toISOString();
      const pin = visitorPin(user);
      const once = onceUnderKey(idempotencyKey ?? null, at);
      await ctx.db.execute(
        sql`with claim as (${once.claim})
            insert into channel_sessions (id, channel, phone, language, state, updated_at)
            select ${session.id}, ${session.channel}, ${user.phone}, ${language}, ${pin}::jsonb, ${at}::timestamptz
            where ${once.first(sql`claim`)}
            on conflict (id) do update set language = excluded.language, updated_at = excluded.updated_at,
              state = channel_sessions.state || ${pin}::jsonb`,
      );
    },

    signUp(user, session, request) {
      return selfSignUp(ctx, subscriberActor(user, session), {
        ...request,
        phone: user.phone,
        channel: session.channel,
        sessionId: session.id,
      });
    },

    async claimEffect(session, user, step) {
      const key = String(step);
      const now = ctx.clock.now();
      // A visitor's confirmation pins the session to the visitor's menu (see loadMenuUser).
      const pin = visitorPin(user);
      // One statement: concurrent copies of the same request race on the row, and only one wins the claim.
      const claimed = await queryRows<{ id: string }>(
        ctx.db,
        sql`insert into channel_sessions (id, channel, phone, state, updated_at)
            values (${session.id}, ${session.channel}, ${user.phone},
                    jsonb_build_object('effects', jsonb_build_object(${key}::text, 'pending')) || ${pin}::jsonb,
                    ${now.toISOString()}::timestamptz)
            on conflict (id) do update
              set state = jsonb_set(channel_sessions.state, '{effects}',
                    coalesce(channel_sessions.state -> 'effects', '{}'::jsonb) || jsonb_build_object(${key}::text, 'pending'))
                    || ${pin}::jsonb,
                  updated_at = excluded.updated_at
              where (channel_sessions.state -> 'effects' -> ${key}::text) is null
            returning id`,
      );
      if (claimed.length > 0) return "claimed";
      return (await recordedOutcome(session, step)) ?? "pending";
    },

    recordedOutcome,

    async bindPlans(session, user, kind, shown) {
      const list = JSON.stringify(shown);
      // Only the first list stays: a session whose numbers named one plan must not see them name another.
      const [stored] = await queryRows<{ plans: PlanView[] | string | null }>(
        ctx.db,
        sql`insert into channel_sessions (id, channel, phone, state, updated_at)
            values (${session.id}, ${session.channel}, ${user.phone},
                    jsonb_build_object('plans', jsonb_build_object(${kind}::text, ${list}::jsonb)),
                    ${ctx.clock.now().toISOString()}::timestamptz)
            on conflict (id) do update
              set state = jsonb_set(channel_sessions.state, '{plans}',
                    coalesce(channel_sessions.state -> 'plans', '{}'::jsonb) || jsonb_build_object(${kind}::text, ${list}::jsonb)),
                  updated_at = excluded.updated_at
              where (channel_sessions.state -> 'plans' -> ${kind}::text) is null
            returning state -> 'plans' -> ${kind}::text as plans`,
      );
      if (stored) return jsonValue(stored.plans, shown);
      const [kept] = await queryRows<{ plans: PlanView[] | string | null }>(
        ctx.db,
        sql`select state -> 'plans' -> ${kind}::text as plans from channel_sessions where id = ${session.id}`,
      );
      return jsonValue(kept?.plans, shown);
    },

    async recordEffect(session, step, outcome) {
      await ctx.db.execute(
        sql`update channel_sessions
            set state = jsonb_set(state, array['effects', ${String(step)}::text], ${JSON.stringify(outcome)}::jsonb),
                updated_at = ${ctx.clock.now().toISOString()}::timestamptz
            where id = ${session.id}`,
      );
    },
  };
}
