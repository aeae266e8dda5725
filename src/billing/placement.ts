import { eq } from "drizzle-orm";
import { routers, subscriptions } from "../db/schema/index.ts";
import { audit } from "./audit.ts";
import { type Actor, type BillingContext, BillingError } from "./context.ts";
import { enqueueProvisioning } from "./outbox.ts";

/**
 * An admin puts a subscription on a router, or moves it to another: a subscriber added with no
 * router yet ("place it later"), a self sign-up from an area without one that paid before it was
 * approved, a customer who moved. The router account is set up on the new router and removed from
 * the old one by the provisioning worker (each row names its router; the worker removes the account
 * from a router the subscription is no longer on), so a router that is down only delays it.
 */
export async function placeSubscription(
  ctx: BillingContext,
  actor: Actor,
  input: { subscriptionId: number; routerId: number },
): Promise<{ fromRouterId: number | null; toRouterId: number }> {
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const [subscription] = await tx
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.id, input.subscriptionId))
      .for("update");
    if (!subscription) throw new BillingError("unknown_subscription", "No such subscription.");
    if (subscription.status === "cancelled")
      throw new BillingError("cancelled", "That subscription is cancelled: it has no router account.");
    const [router] = await tx.select({ id: routers.id }).from(routers).where(eq(routers.id, input.routerId));
    if (!router) throw new BillingError("unknown_router", "That router does not exist.");
    const fromRouterId = subscription.routerId;
    if (fromRouterId === router.id)
      throw new BillingError("same_router", "The subscription is already on that router.");
    await tx.update(subscriptions).set({ routerId: router.id }).where(eq(subscriptions.id, subscription.id));
    await enqueueProvisioning(tx, now, {
      action: "ensure_account",
      subscriptionId: subscription.id,
      routerId: router.id,
    });
    if (fromRouterId !== null)
      await enqueueProvisioning(tx, now, {
        action: "ensure_account",
        subscriptionId: subscription.id,
        routerId: fromRouterId,
      });
    await audit(tx, actor, now, {
      action: "subscription.placed",
      entity: "subscription",
      entityId: subscription.id,
      details: { customerId: subscription.customerId, fromRouterId, toRouterId: router.id },
    });
    return { fromRouterId, toRouterId: router.id };
  });
}
