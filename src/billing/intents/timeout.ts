import { and, asc, eq, isNotNull, lte } from "drizzle-orm";
import type { Executor } from "../../db/client.ts";
import { paymentIntents } from "../../db/schema/index.ts";
import { audit } from "../audit.ts";
import type { Actor, BillingContext } from "../context.ts";
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

/**
 * M-Pesa never gave an answer: the intent times out (a success that comes later is still credited).
 * Daraja accepted the push, so it may have been paid: the payer is not told it failed (they saw
 * the prompt and know what they did; a payment still arriving is receipted as usual).
 */
export async function timeOutIntent(ctx: BillingContext, actor: Actor, intentId: number): Promise<boolean> {
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const [row] = await tx
      .update(paymentIntents)
      .set({ status: "timed_out", resultDesc: "No answer from M-Pesa", settledAt: now, updatedAt: now })
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
