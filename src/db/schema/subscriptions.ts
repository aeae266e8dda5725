import { sql } from "drizzle-orm";
import { check, index, integer, pgTable, text, uniqueIndex } from "drizzle-orm/pg-core";
import { sealedText } from "../sealed.ts";
import { at, cents, createdAt, id } from "./columns.ts";
import { customers } from "./customers.ts";
import { plans } from "./plans.ts";
import { routers } from "./routers.ts";

/**
 * pending: created, waiting for the first payment (network account exists but is disabled);
 * active: served; suspended: cut off for non-payment or by an admin; cancelled: final.
 */
export const subscriptionStatuses = ["pending", "active", "suspended", "cancelled"] as const;
export type SubscriptionStatus = (typeof subscriptionStatuses)[number];

export const subscriptions = pgTable(
  "subscriptions",
  {
    id: id(),
    customerId: integer("customer_id")
      .notNull()
      .references(() => customers.id),
    planId: integer("plan_id")
      .notNull()
      .references(() => plans.id),
    routerId: integer("router_id").references(() => routers.id),
    networkUsername: text("network_username").notNull(),
    /** Sealed at rest (see src/db/sealed.ts). */
    networkPassword: sealedText("network_password").notNull(),
    status: text("status", { enum: subscriptionStatuses }).notNull(),
    /** Why the subscription is suspended: `dunning` (restored by payment) or `admin` (restored by an admin). */
    suspendedReason: text("suspended_reason", { enum: ["dunning", "admin"] }),
    currentPeriodStart: at("current_period_start").notNull(),
    currentPeriodEnd: at("current_period_end").notNull(),
    /** The instant periods are counted from; monthly periods keep its day of month. */
    billingAnchor: at("billing_anchor").notNull(),
    /** Periods completed since the anchor: period n runs from anchor+n to anchor+n+1 periods. */
    periodIndex: integer("period_index").notNull().default(0),
    nextPlanId: integer("next_plan_id").references(() => plans.id),
    /**
     * What the current plan was billed at for its period (cents per the plan's own period): the
     * current period's invoice, or the plan's price when a plan change took it mid-period. A plan
     * change values the unused part of the period at this, not at a list price an admin changed
     * since. Null on subscriptions from before it was kept: the plan's price then.
     */
    periodPriceCents: cents("period_price_cents"),
    /**
     * What the period after the current one is billed at (cents per its plan's period), once its
     * bill is out: the plan's price when issued, or the price a plan change repriced it to (a
     * top-up or credit beside the bill, never an edit of it). It becomes `periodPriceCents` when that
     * period starts. Null: no bill out, or one from before it was kept.
     */
    nextPeriodPriceCents: cents("next_period_price_cents"),
    createdAt: createdAt(),
    cancelledAt: at("cancelled_at"),
  },
  (t) => [
    uniqueIndex("subscriptions_network_username_uq").on(t.networkUsername),
    index("subscriptions_customer_idx").on(t.customerId),
    index("subscriptions_period_end_idx").on(t.currentPeriodEnd),
    check("subscriptions_period_order", sql`${t.currentPeriodEnd} > ${t.currentPeriodStart}`),
  ],
);
