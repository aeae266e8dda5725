import { and, eq, inArray, or } from "drizzle-orm";
import { alias } from "drizzle-orm/pg-core";
import type { Executor } from "../db/client.ts";
import { customers, invoices, plans, subscriptions } from "../db/schema/index.ts";
import { requireBox } from "../db/sealed.ts";
import { planNameIn } from "./accounts.ts";
import { audit } from "./audit.ts";
import type { Actor, BillingContext } from "./context.ts";
import { hasOverdueInvoices } from "./ledger.ts";
import { enqueueMessage, enqueueProvisioning } from "./outbox.ts";
import { restartPeriodAt } from "./service-periods.ts";

const nextPlan = alias(plans, "next_plan");

/**
 * Brings back service that was waiting on money: a pending subscription's first payment, or a
 * subscription suspended by dunning once nothing is overdue. Admin suspensions stay as they are.
 */
export async function restoreIfSettled(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  customerId: number,
  now: Date,
): Promise<number[]> {
  const waiting = await tx
    .select({ subscription: subscriptions, plan: plans, nextPlan })
    .from(subscriptions)
    .innerJoin(plans, eq(plans.id, subscriptions.planId))
    .leftJoin(nextPlan, eq(nextPlan.id, subscriptions.nextPlanId))
    .where(
      and(
        eq(subscriptions.customerId, customerId),
        or(
          eq(subscriptions.status, "pending"),
          and(eq(subscriptions.status, "suspended"), eq(subscriptions.suspendedReason, "dunning")),
        ),
      ),
    )
    // The subscriptions only: a plan is shared by many customers, and locking it would make
    // payments of different customers wait on (and deadlock with) one another.
    .for("update", { of: subscriptions });
  if (waiting.length === 0) return [];
  if (await hasOverdueInvoices(tx, customerId, now)) return [];

  const [customer] = await tx.select().from(customers).where(eq(customers.id, customerId));
  const restored: number[] = [];
  for (const { subscription, plan: currentPlan, nextPlan: scheduled } of waiting) {
    let plan = currentPlan;
    const coveringPeriodStart =
      subscription.status === "pending" ? subscription.currentPeriodStart : subscription.currentPeriodEnd;
    const [covering] = await tx
      .select({ id: invoices.id })
      .from(invoices)
      .where(
        and(
          eq(invoices.subscriptionId, subscription.id),
          eq(invoices.kind, "recurring"),
          eq(invoices.periodStart, coveringPeriodStart),
          inArray(invoices.status, ["paid"]),
        ),
      );
    let periodEnd = subscription.currentPeriodEnd;
    if (subscription.status === "pending" || now >= subscription.currentPeriodEnd) {
      if (subscription.status === "suspended" && !covering) continue; // nothing paid for the next period yet
      // The period paid for is the one after the old period: a change scheduled for the old
      // period's end (a downgrade) is what was billed and paid, so it is what starts now.
      if (subscription.status === "suspended" && scheduled) {
        plan = scheduled;
        await tx
          .update(subscriptions)
          .set({ planId: scheduled.id, nextPlanId: null })
          .where(eq(subscriptions.id, subscription.id));
      }
      periodEnd = (await restartPeriodAt(tx, subscription, plan, now, ctx.settings, covering?.id ?? null))
        .end;
    }
    await tx
      .update(subscriptions)
      .set({ status: "active", suspendedReason: null })
      .where(eq(subscriptions.id, subscription.id));
    await enqueueProvisioning(tx, now, {
      action: "restore",
      subscriptionId: subscription.id,
      routerId: subscription.routerId,
    });
    if (customer) {
      // A first activation is not "back on": it says the service is active and gives the
      // subscriber the credentials their router dials with. The password is sealed in the outbox
      // row as in the subscription (src/db/sealed.ts); the SMS worker opens it only to send, and
      // never logs it (a secret parameter, src/messaging/render.ts).
      await enqueueMessage(
        tx,
        now,
        subscription.status === "pending"
          ? {
              recipient: customer.phone,
              language: customer.language,
              template: "activated",
              params: {
                plan: planNameIn(plan, customer.language),
                periodEndAt: periodEnd.toISOString(),
                username: subscription.networkUsername,
                password: requireBox().seal(subscription.networkPassword),
              },
              dedupeKey: `activated:${subscription.id}`,
            }
          : {
              recipient: customer.phone,
              language: customer.language,
              template: "restored",
              params: { periodEndAt: periodEnd.toISOString() },
            },
      );
    }
    await audit(tx, actor, now, {
      action: subscription.status === "pending" ? "subscription.activated" : "subscription.restored",
      entity: "subscription",
      entityId: subscription.id,
      details: { periodEnd: periodEnd.toISOString() },
    });
    restored.push(subscription.id);
  }
  return restored;
}
