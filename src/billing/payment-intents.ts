import { and, asc, eq, gte, isNull, lte, sql } from "drizzle-orm";
import type { Executor } from "../db/client.ts";
import { customers, type IntentPurpose, paymentIntents, plans, subscriptions } from "../db/schema/index.ts";
import { audit } from "./audit.ts";
import type { Actor, BillingContext } from "./context.ts";
import { formatKes } from "./money.ts";
import { enqueueMessage } from "./outbox.ts";

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
}

export type RequestPaymentResult =
  | { ok: true; intentId: number }
  | { ok: false; reason: "rate_limited" | "amount_out_of_range" | "invalid"; message: string };

/** `+2547XXXXXXXX` / `+2541XXXXXXXX` from the ways Kenyans write a number; null if it is not one. */
export function normalizeKenyanPhone(input: string): string | null {
  const digits = input.replace(/[\s\-()]/g, "");
  const match = /^(?:\+?254|0)?([17]\d{8})$/.exec(digits);
  return match ? `+254${match[1]}` : null;
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
  const amountCents = Math.ceil(input.amountCents / 100) * 100;
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

  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    let customerId = input.customerId ?? null;
    if (input.subscriptionId !== undefined) {
      const [sub] = await tx
        .select({ customerId: subscriptions.customerId })
        .from(subscriptions)
        .where(eq(subscriptions.id, input.subscriptionId));
      if (!sub) return invalid("That subscription does not exist.");
      if (customerId !== null && customerId !== sub.customerId)
        return invalid("That subscription is not yours.");
      customerId = sub.customerId;
    }
    if (input.planId !== undefined) {
      const [plan] = await tx
        .select({ id: plans.id, active: plans.active })
        .from(plans)
        .where(eq(plans.id, input.planId));
      if (!plan?.active) return invalid("That package is not on sale.");
    }
    if (input.subscriptionId === undefined && customerId !== null) {
      const [customer] = await tx
        .select({ id: customers.id })
        .from(customers)
        .where(eq(customers.id, customerId));
      if (!customer) return invalid("That account does not exist.");
    }

    await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`stk-phone:${phone}`}))`);
    const since = new Date(now.getTime() - limits.windowMs);
    const [byPhone] = await tx
      .select({ n: sql<number>`count(*)::int` })
      .from(paymentIntents)
      .where(and(eq(paymentIntents.phone, phone), gte(paymentIntents.createdAt, since)));
    let refused = Number(byPhone?.n ?? 0) >= limits.promptsPerWindow;
    if (!refused && input.channelSessionId) {
      await tx.execute(
        sql`select pg_advisory_xact_lock(hashtext(${`stk-session:${input.channel}:${input.channelSessionId}`}))`,
      );
      const [bySession] = await tx
        .select({ n: sql<number>`count(*)::int` })
        .from(paymentIntents)
        .where(
          and(
            eq(paymentIntents.channel, input.channel),
            eq(paymentIntents.channelSessionId, input.channelSessionId),
            gte(paymentIntents.createdAt, since),
          ),
        );
      refused = Number(bySession?.n ?? 0) >= limits.promptsPerWindow;
    }
    if (refused) {
      const minutes = Math.max(1, Math.round(limits.windowMs / 60_000));
      return {
        ok: false as const,
        reason: "rate_limited" as const,
        message: `Too many payment prompts: at most ${limits.promptsPerWindow} in ${minutes} minutes. Please wait and try again.`,
      };
    }

    const [row] = await tx
      .insert(paymentIntents)
      .values({
        customerId,
        phone,
        purpose: input.purpose,
        amountCents,
        planId: input.planId ?? null,
        subscriptionId: input.subscriptionId ?? null,
        channel: input.channel,
        channelSessionId: input.channelSessionId ?? null,
        status: "pending",
        nextSendAt: now,
        createdAt: now,
        updatedAt: now,
      })
      .returning({ id: paymentIntents.id });
    await audit(tx, actor, now, {
      action: "payment_intent.requested",
      entity: "payment_intent",
      entityId: row!.id,
      details: { purpose: input.purpose, amountCents, phone },
    });
    return { ok: true as const, intentId: row!.id };
  });
}

export interface IntentToSend {
  id: number;
  phone: string;
  amountCents: number;
  purpose: IntentPurpose;
  customerId: number | null;
  attempt: number;
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
  const leaseUntil = new Date(now.getTime() + (options.leaseMs ?? 30_000));
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
