import { and, asc, eq, isNotNull, lte } from "drizzle-orm";
import type { Executor } from "../../db/client.ts";
import { paymentIntents } from "../../db/schema/index.ts";
import { audit } from "../audit.ts";
import type { Actor, BillingContext } from "../context.ts";

/**
 * A push M-Pesa gave no answer for by the time it timed out may still have been paid (its callback
 * lost, the status query failing all that while): it is asked about again this often…
 */
export const UNANSWERED_ASK_EVERY_MS = 5 * 60_000;
/** …for this long after it was sent; then the admins are told (see `giveUpAsking`). */
export const UNANSWERED_ASK_FOR_MS = 24 * 60 * 60_000;

export interface IntentAwaitingResult {
  id: number;
  checkoutRequestId: string;
  sentAt: Date;
  /** `timed_out`: one asked about again (UNANSWERED_ASK_EVERY_MS). */
  status: "pending" | "timed_out";
}

/**
 * Pushes sent at least `olderThanMs` ago whose result is still unknown: pending ones, then those
 * timed out without an answer that are due to be asked about again.
 */
export async function listIntentsAwaitingResult(
  db: Executor,
  now: Date,
  olderThanMs: number,
  limit = 100,
): Promise<IntentAwaitingResult[]> {
  const i = paymentIntents;
  const columns = { id: i.id, checkoutRequestId: i.checkoutRequestId, sentAt: i.sentAt, status: i.status };
  const pending = await db
    .select(columns)
    .from(i)
    .where(
      and(
        eq(i.status, "pending"),
        isNotNull(i.checkoutRequestId),
        lte(i.sentAt, new Date(now.getTime() - olderThanMs)),
      ),
    )
    .orderBy(asc(i.sentAt))
    .limit(limit);
  const unanswered = await db
    .select(columns)
    .from(i)
    .where(and(eq(i.status, "timed_out"), isNotNull(i.nextQueryAt), lte(i.nextQueryAt, now)))
    .orderBy(asc(i.nextQueryAt))
    .limit(limit);
  return [...pending, ...unanswered].map((r) => ({
    id: r.id,
    checkoutRequestId: r.checkoutRequestId!,
    sentAt: r.sentAt!,
    status: r.status === "pending" ? "pending" : "timed_out",
  }));
}

/**
 * M-Pesa never gave an answer: the intent times out (a success that comes later is still credited).
 * Daraja accepted the push, so it may have been paid: the payer is not told it failed (they saw
 * the prompt and know what they did; a payment still arriving is receipted as usual), and M-Pesa is
 * asked about it again later (`nextQueryAt`), as its callback may be lost for good.
 */
export async function timeOutIntent(ctx: BillingContext, actor: Actor, intentId: number): Promise<boolean> {
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const [row] = await tx
      .update(paymentIntents)
      .set({
        status: "timed_out",
        resultDesc: "No answer from M-Pesa",
        nextQueryAt: new Date(now.getTime() + UNANSWERED_ASK_EVERY_MS),
        settledAt: now,
        updatedAt: now,
      })
      .where(and(eq(paymentIntents.id, intentId), eq(paymentIntents.status, "pending")))
      .returning();
    if (!row) return false;
    await audit(tx, actor, now, {
      action: "payment_intent.timed_out",
      entity: "payment_intent",
      entityId: row.id,
    });
    return true;
  });
}

/** Still no answer for a timed-out push: asked about again later. */
export async function askAgainLater(ctx: BillingContext, intentId: number): Promise<void> {
  const now = ctx.clock.now();
  await ctx.db
    .update(paymentIntents)
    .set({ nextQueryAt: new Date(now.getTime() + UNANSWERED_ASK_EVERY_MS) })
    .where(
      and(
        eq(paymentIntents.id, intentId),
        eq(paymentIntents.status, "timed_out"),
        isNotNull(paymentIntents.nextQueryAt),
      ),
    );
}

/**
 * Asked about for a day without an answer: asking stops, and the push is marked unresolved, which
 * the admins are told (src/bots/admin/unresolved-push-alerts.ts): whether it was paid is on M-Pesa's statement.
 */
export async function giveUpAsking(ctx: BillingContext, actor: Actor, intentId: number): Promise<boolean> {
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const [row] = await tx
      .update(paymentIntents)
      .set({ nextQueryAt: null, unresolvedAt: now, updatedAt: now })
      .where(
        and(
          eq(paymentIntents.id, intentId),
          eq(paymentIntents.status, "timed_out"),
          isNotNull(paymentIntents.nextQueryAt),
        ),
      )
      .returning({ id: paymentIntents.id });
    if (!row) return false;
    await audit(tx, actor, now, {
      action: "payment_intent.unresolved",
      entity: "payment_intent",
      entityId: row.id,
    });
    return true;
  });
}

/** An answer came (a callback, a status query): a timed-out push is not asked about any more. */
export async function stopAsking(tx: Executor, intentId: number): Promise<void> {
  await tx
    .update(paymentIntents)
    .set({ nextQueryAt: null })
    .where(and(eq(paymentIntents.id, intentId), isNotNull(paymentIntents.nextQueryAt)));
}
