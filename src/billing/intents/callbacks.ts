import { and, eq } from "drizzle-orm";
import type { Executor } from "../../db/client.ts";
import { mpesaCallbacks } from "../../db/schema/index.ts";
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
