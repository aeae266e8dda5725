import { eq } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { subscriptions } from "../db/schema/index.ts";
import type { Actor, BillingContext } from "./context.ts";
import { restoreIfSettled } from "./restore.ts";
import { extendSubscription } from "./subscriptions.ts";

/**
 * Free days of service, as an ISP means "extend": the paid-until date (the current period's end)
 * moves `days` later without a charge, the next invoice moving with it (`extendSubscription`). A
 * subscription suspended for non-payment whose unpaid invoice is now not yet due again comes back
 * (`restoreIfSettled`: router restore, "restored" notice), all in one transaction with the audit.
 * Days a suspended subscriber was cut off are not given back: the days count from the old period end.
 */
export function extendService(
  ctx: BillingContext,
  actor: Actor,
  input: { subscriptionId: number; days: number; reason: string },
) {
  return ctx.db.transaction(async (tx) => {
    const inTx: BillingContext = { ...ctx, db: tx as unknown as Db };
    const extended = await extendSubscription(inTx, actor, input);
    const restored =
      extended.status === "suspended" && extended.suspendedReason === "dunning"
        ? await restoreIfSettled(tx, inTx, actor, extended.customerId, ctx.clock.now())
        : [];
    const [after] = await tx.select().from(subscriptions).where(eq(subscriptions.id, extended.id));
    return { subscription: after ?? extended, restored: restored.includes(extended.id) };
  });
}
