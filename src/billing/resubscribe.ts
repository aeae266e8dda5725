import { and, eq, like, ne, or } from "drizzle-orm";
import { customers, plans, routers, subscriptions } from "../db/schema/index.ts";
import { audit } from "./audit.ts";
import { type Actor, type BillingContext, BillingError } from "./context.ts";
import { balanceOf } from "./ledger.ts";
import { lockCustomerMoney } from "./money-lock.ts";
import { restoreIfSettled } from "./restore.ts";
import { randomPassword, startSubscriptionInTx } from "./subscriptions.ts";

/**
 * A customer whose subscription ended (cancelled, or a sign-up that was rejected) comes back: a new
 * subscription for the same account, with its balance, history and phone, waiting for its first
 * payment like any new one (credit left on the account pays it at once; older bills still owed are
 * paid first, oldest first, and service starts once nothing is overdue). Its router login is the account
 * number again when free, else with a suffix: a login is never reused by two subscriptions.
 */
export async function resubscribe(
  ctx: BillingContext,
  actor: Actor,
  input: { customerId: number; planId: number; routerId?: number | null },
) {
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    await lockCustomerMoney(tx, [input.customerId]);
    const [customer] = await tx.select().from(customers).where(eq(customers.id, input.customerId));
    if (!customer) throw new BillingError("unknown_customer", "No such customer.");
    const [live] = await tx
      .select({ id: subscriptions.id, status: subscriptions.status })
      .from(subscriptions)
      .where(and(eq(subscriptions.customerId, customer.id), ne(subscriptions.status, "cancelled")));
    if (live)
      throw new BillingError("has_subscription", `The account already has a subscription (${live.status}).`);
    const [plan] = await tx.select().from(plans).where(eq(plans.id, input.planId));
    if (!plan?.active) throw new BillingError("unknown_plan", "That plan does not exist or is retired.");
    if (input.routerId != null) {
      const [router] = await tx
        .select({ id: routers.id })
        .from(routers)
        .where(eq(routers.id, input.routerId));
      if (!router) throw new BillingError("unknown_router", "That router does not exist.");
    }
    const base = customer.accountNumber.toLowerCase();
    const taken = new Set(
      (
        await tx
          .select({ username: subscriptions.networkUsername })
          .from(subscriptions)
          .where(
            or(eq(subscriptions.networkUsername, base), like(subscriptions.networkUsername, `${base}-%`)),
          )
      ).map((r) => r.username),
    );
    let username = base;
    for (let n = 2; taken.has(username); n++) username = `${base}-${n}`;
    if (customer.status !== "active")
      await tx.update(customers).set({ status: "active" }).where(eq(customers.id, customer.id));
    const started = await startSubscriptionInTx(tx, ctx, actor, { ...customer, status: "active" }, plan, {
      routerId: input.routerId ?? null,
      networkUsername: username,
      networkPassword: randomPassword(),
    });
    // Credit left on the account may have paid the first period: then service starts now.
    const restored = await restoreIfSettled(tx, ctx, actor, customer.id, now);
    const [subscription] = await tx
      .select()
      .from(subscriptions)
      .where(eq(subscriptions.id, started.subscription.id));
    await audit(tx, actor, now, {
      action: "customer.resubscribed",
      entity: "customer",
      entityId: customer.id,
      details: { subscriptionId: started.subscription.id, planId: plan.id },
    });
    return {
      ...started,
      subscription: subscription ?? started.subscription,
      started: restored.length > 0,
      /** What the account owes now: the first period and any older bill not paid by its credit. */
      owedCents: Math.max(0, -(await balanceOf(tx, customer.id))),
    };
  });
}
