import { and, eq, inArray } from "drizzle-orm";
import type { Executor } from "../db/client.ts";
import { invoices, subscriptions } from "../db/schema/index.ts";
import { audit, requireReason } from "./audit.ts";
import { type Actor, type BillingContext, BillingError } from "./context.ts";
import { restartDunningInTx } from "./dunning.ts";
import { lockedSubscription } from "./money-lock.ts";
import { enqueueProvisioning } from "./outbox.ts";
import { movePeriodEnd } from "./service-periods.ts";

/** An admin sets a subscription's service state; the router follows and the reason is audited. */
async function setServiceByAdmin(
  ctx: BillingContext,
  actor: Actor,
  input: { subscriptionId: number; reason: string },
  change: "suspend" | "resume",
) {
  const reason = requireReason(input.reason);
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const { subscription, plan } = await lockedSubscription(tx, input.subscriptionId);
    if (change === "suspend") {
      if (subscription.status === "cancelled")
        throw new BillingError("cancelled", "That subscription is cancelled.");
      // Not started: a resume would skip its activation (the login the first payment sends).
      if (subscription.status === "pending")
        throw new BillingError(
          "pending",
          "That subscription has not started: it starts with its first payment. To turn a sign-up away, reject it in /signups or /cancel it.",
        );
      if (subscription.status === "suspended" && subscription.suspendedReason === "admin")
        return subscription;
    } else if (subscription.status !== "suspended") {
      throw new BillingError("not_suspended", "That subscription is not suspended.");
    }
    // Back after the period paid for ran out: the days cut off are not billed. The period ends now,
    // so the next one (and its bill, issued or to come) starts with the service.
    const endsNow = change === "resume" && subscription.currentPeriodEnd < now;
    if (endsNow) await movePeriodEnd(tx, subscription, plan, now, ctx.settings);
    const [updated] = await tx
      .update(subscriptions)
      .set(
        change === "suspend"
          ? { status: "suspended", suspendedReason: "admin" }
          : { status: "active", suspendedReason: null },
      )
      .where(eq(subscriptions.id, subscription.id))
      .returning();
    // Whatever suspended it (an admin's suspension may have replaced dunning's), a bill still
    // unpaid is enforced again after a grace period from now.
    if (change === "resume")
      await restartDunningInTx(tx, await unpaidInvoiceIds(tx, subscription.id), { resumed: now });
    await enqueueProvisioning(tx, now, {
      action: change === "suspend" ? "suspend" : "restore",
      subscriptionId: subscription.id,
      routerId: subscription.routerId,
    });
    await audit(tx, actor, now, {
      action: change === "suspend" ? "subscription.suspended" : "subscription.resumed",
      entity: "subscription",
      entityId: subscription.id,
      reason,
      ...(endsNow
        ? {
            details: {
              periodEnd: { from: subscription.currentPeriodEnd.toISOString(), to: now.toISOString() },
            },
          }
        : {}),
    });
    return updated!;
  });
}

/** The bills of a subscription that dunning enforces and that are still unpaid. */
async function unpaidInvoiceIds(tx: Executor, subscriptionId: number): Promise<number[]> {
  const rows = await tx
    .select({ id: invoices.id })
    .from(invoices)
    .where(
      and(
        eq(invoices.subscriptionId, subscriptionId),
        eq(invoices.status, "open"),
        inArray(invoices.kind, ["recurring", "proration"]),
      ),
    );
  return rows.map((r) => r.id);
}

/** An admin cuts service off (abuse, request of the subscriber, ...). Only an admin brings it back. */
export function suspendSubscription(
  ctx: BillingContext,
  actor: Actor,
  input: { subscriptionId: number; reason: string },
) {
  return setServiceByAdmin(ctx, actor, input, "suspend");
}

/** An admin restores service, whatever suspended it. */
export function resumeSubscription(
  ctx: BillingContext,
  actor: Actor,
  input: { subscriptionId: number; reason: string },
) {
  return setServiceByAdmin(ctx, actor, input, "resume");
}
