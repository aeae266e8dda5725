import { and, eq, gt, inArray, isNull, ne, or, sql } from "drizzle-orm";
import type { Executor } from "../db/client.ts";
import { textArray } from "../db/params.ts";
import { plans, subscriptions, vouchers } from "../db/schema/index.ts";
import { planMarker, subscriptionMarker, voucherMarker } from "./markers.ts";

/**
 * What a router should hold, read from the database. The outbox rows only say which target to look
 * at: the worker and the reconciliation both converge the router to these values.
 */

type Plan = typeof plans.$inferSelect;
type Subscription = typeof subscriptions.$inferSelect;
type Voucher = typeof vouchers.$inferSelect;

export interface DesiredProfile {
  kind: "ppp" | "hotspot";
  planId: number;
  name: string;
  rateLimit: string;
  comment: string;
}

export interface DesiredSecret {
  subscriptionId: number;
  name: string;
  password: string;
  profile: string;
  disabled: boolean;
  comment: string;
}

export interface DesiredHotspotUser {
  voucherId: number;
  name: string;
  password: string;
  profile: string;
  limitUptimeSeconds: number;
  /** null: no data cap. */
  limitBytesTotal: number | null;
  comment: string;
}

export const profileName = (plan: Pick<Plan, "code">) => `tandao-${plan.code}`;

export function desiredProfile(plan: Plan): DesiredProfile {
  return {
    kind: plan.kind === "pppoe" ? "ppp" : "hotspot",
    planId: plan.id,
    name: profileName(plan),
    rateLimit: plan.rateLimit,
    comment: planMarker(plan.id),
  };
}

/** What a secret is made of (the reconciliation re-reads only these columns). */
export type SecretSource = Pick<Subscription, "id" | "status" | "networkUsername" | "networkPassword">;
export type HotspotUserSource = Pick<
  Voucher,
  "id" | "status" | "expiresAt" | "code" | "limitUptimeSeconds" | "limitBytesTotal"
>;
export type HotspotPlanSource = Pick<
  Plan,
  "code" | "timeLimitSeconds" | "periodUnit" | "periodCount" | "dataCapBytes"
>;

/** null when the subscription must not exist on the router (cancelled). */
export function desiredSecret(subscription: SecretSource, plan: Pick<Plan, "code">): DesiredSecret | null {
  if (subscription.status === "cancelled") return null;
  return {
    subscriptionId: subscription.id,
    name: subscription.networkUsername,
    password: subscription.networkPassword,
    profile: profileName(plan),
    disabled: subscription.status !== "active",
    comment: subscriptionMarker(subscription.id),
  };
}

const periodSeconds: Record<Plan["periodUnit"], number> = { hours: 3_600, days: 86_400, months: 30 * 86_400 };

export function voucherUptimeSeconds(
  plan: Pick<Plan, "timeLimitSeconds" | "periodUnit" | "periodCount">,
): number {
  return plan.timeLimitSeconds ?? periodSeconds[plan.periodUnit] * plan.periodCount;
}

/** null when the voucher must not exist on the router (unsold, expired). */
export function desiredHotspotUser(
  voucher: HotspotUserSource,
  plan: HotspotPlanSource,
  now: Date,
): DesiredHotspotUser | null {
  if (voucher.status !== "sold" && voucher.status !== "redeemed") return null;
  if (voucher.expiresAt.getTime() <= now.getTime()) return null;
  return {
    voucherId: voucher.id,
    name: voucher.code,
    password: voucher.code,
    profile: profileName(plan),
    // The terms it was sold on; a code sold before they were kept has its plan's.
    ...(voucher.limitUptimeSeconds !== null
      ? { limitUptimeSeconds: voucher.limitUptimeSeconds, limitBytesTotal: voucher.limitBytesTotal }
      : { limitUptimeSeconds: voucherUptimeSeconds(plan), limitBytesTotal: plan.dataCapBytes ?? null }),
    comment: voucherMarker(voucher.id),
  };
}

export async function loadSubscription(
  db: Executor,
  subscriptionId: number,
): Promise<{ subscription: Subscription; plan: Plan } | null> {
  const rows = await db
    .select({ subscription: subscriptions, plan: plans })
    .from(subscriptions)
    .innerJoin(plans, eq(plans.id, subscriptions.planId))
    .where(eq(subscriptions.id, subscriptionId));
  return rows[0] ?? null;
}

export async function loadVoucher(
  db: Executor,
  voucherId: number,
): Promise<{ voucher: Voucher; plan: Plan } | null> {
  const rows = await db
    .select({ voucher: vouchers, plan: plans })
    .from(vouchers)
    .innerJoin(plans, eq(plans.id, vouchers.planId))
    .where(eq(vouchers.id, voucherId));
  return rows[0] ?? null;
}

export async function loadPlan(db: Executor, planId: number): Promise<Plan | null> {
  const rows = await db.select().from(plans).where(eq(plans.id, planId));
  return rows[0] ?? null;
}

export interface RouterDesiredState {
  profiles: DesiredProfile[];
  secrets: DesiredSecret[];
  hotspotUsers: DesiredHotspotUser[];
}

/** The whole of one router: its subscriptions, the vouchers sold for it (or for any router), the plans' profiles. */
export async function loadRouterDesiredState(
  db: Executor,
  routerId: number,
  now: Date,
): Promise<RouterDesiredState> {
  const subscriptionRows = await db
    .select({ subscription: subscriptions, plan: plans })
    .from(subscriptions)
    .innerJoin(plans, eq(plans.id, subscriptions.planId))
    .where(and(eq(subscriptions.routerId, routerId), ne(subscriptions.status, "cancelled")));
  const voucherRows = await db
    .select({ voucher: vouchers, plan: plans })
    .from(vouchers)
    .innerJoin(plans, eq(plans.id, vouchers.planId))
    .where(
      and(
        or(eq(vouchers.routerId, routerId), isNull(vouchers.routerId)),
        inArray(vouchers.status, ["sold", "redeemed"]),
        gt(vouchers.expiresAt, now),
      ),
    );
  const allPlans = await db.select().from(plans);
  const used = new Set<number>([
    ...subscriptionRows.map((r) => r.plan.id),
    ...voucherRows.map((r) => r.plan.id),
  ]);
  return {
    profiles: allPlans.filter((p) => p.active || used.has(p.id)).map(desiredProfile),
    secrets: subscriptionRows.flatMap((r) => desiredSecret(r.subscription, r.plan) ?? []),
    hotspotUsers: voucherRows.flatMap((r) => desiredHotspotUser(r.voucher, r.plan, now) ?? []),
  };
}

/** The subscription or voucher whose user name a session carries, with what this router should hold for it. */
export interface SessionOwner<W> {
  id: number;
  /** null: it must not exist on this router (cancelled, moved, expired). */
  want: W | null;
}

/**
 * The Tandao subscriptions and vouchers named by sessions that have no entry on the router (their
 * secret or user was removed, but the drop of the session was lost). Other names are not Tandao's.
 */
export async function loadSessionOwners(
  db: Executor,
  routerId: number,
  now: Date,
  names: { ppp: string[]; hotspot: string[] },
): Promise<{
  ppp: Map<string, SessionOwner<DesiredSecret>>;
  hotspot: Map<string, SessionOwner<DesiredHotspotUser>>;
}> {
  const subscriptionRows =
    names.ppp.length === 0
      ? []
      : await db
          .select({ subscription: subscriptions, plan: plans })
          .from(subscriptions)
          .innerJoin(plans, eq(plans.id, subscriptions.planId))
          .where(sql`${subscriptions.networkUsername} = any(${textArray(names.ppp)})`);
  const voucherRows =
    names.hotspot.length === 0
      ? []
      : await db
          .select({ voucher: vouchers, plan: plans })
          .from(vouchers)
          .innerJoin(plans, eq(plans.id, vouchers.planId))
          .where(sql`${vouchers.code} = any(${textArray(names.hotspot)})`);
  // The same desired states as the worker's and the target leases' (targets.ts).
  return {
    ppp: new Map(
      subscriptionRows.map(({ subscription: s, plan }) => [
        s.networkUsername,
        { id: s.id, want: s.routerId === routerId ? desiredSecret(s, plan) : null },
      ]),
    ),
    hotspot: new Map(
      voucherRows.map(({ voucher: v, plan }) => [
        v.code,
        {
          id: v.id,
          want: v.routerId === null || v.routerId === routerId ? desiredHotspotUser(v, plan, now) : null,
        },
      ]),
    ),
  };
}
