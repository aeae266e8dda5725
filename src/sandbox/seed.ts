import { sql } from "drizzle-orm";
import type { Actor, BillingContext } from "../billing/context.ts";
import { createCustomerWithSubscription } from "../billing/subscriptions.ts";
import { queryRows } from "../db/client.ts";
import { plans } from "../db/schema/index.ts";

const demoPlans: (typeof plans.$inferInsert)[] = [
  {
    code: "home-5",
    name: "Home 5 Mbps",
    nameSw: "Nyumbani 5 Mbps",
    kind: "pppoe",
    priceCents: 150_000,
    periodUnit: "months",
    periodCount: 1,
    rateLimit: "2M/5M",
  },
  {
    code: "home-10",
    name: "Home 10 Mbps",
    nameSw: "Nyumbani 10 Mbps",
    kind: "pppoe",
    priceCents: 250_000,
    periodUnit: "months",
    periodCount: 1,
    rateLimit: "5M/10M",
  },
  {
    code: "home-20",
    name: "Home 20 Mbps",
    nameSw: "Nyumbani 20 Mbps",
    kind: "pppoe",
    priceCents: 400_000,
    periodUnit: "months",
    periodCount: 1,
    rateLimit: "10M/20M",
  },
  {
    code: "hs-1h",
    name: "Hotspot 1 hour",
    nameSw: "Hotspot saa 1",
    kind: "hotspot",
    priceCents: 2_000,
    periodUnit: "hours",
    periodCount: 1,
    rateLimit: "2M/4M",
    timeLimitSeconds: 3_600,
  },
  {
    code: "hs-24h",
    name: "Hotspot 24 hours",
    nameSw: "Hotspot saa 24",
    kind: "hotspot",
    priceCents: 5_000,
    periodUnit: "hours",
    periodCount: 24,
    rateLimit: "2M/4M",
  },
  {
    code: "hs-7d",
    name: "Hotspot 7 days",
    nameSw: "Hotspot siku 7",
    kind: "hotspot",
    priceCents: 25_000,
    periodUnit: "days",
    periodCount: 7,
    rateLimit: "3M/6M",
    dataCapBytes: 10 * 1024 ** 3,
  },
];

/** Demo subscriber of the sandbox: dial the USSD menu as this phone number to see an account. */
export const DEMO_PHONE = "+254712345678";

/**
 * Gives an empty sandbox database something to try: plans, and one subscriber waiting for their
 * first payment. Does nothing once any plan exists.
 */
export async function seedSandbox(ctx: BillingContext, routerId: number | null): Promise<boolean> {
  const [row] = await queryRows<{ n: number }>(ctx.db, sql`select count(*)::int as n from plans`);
  if (Number(row?.n ?? 0) > 0) return false;
  await ctx.db.insert(plans).values(demoPlans);
  const [home] = await ctx.db.select().from(plans).where(sql`${plans.code} = 'home-10'`);
  const actor: Actor = { kind: "system", id: "sandbox-seed" };
  await createCustomerWithSubscription(ctx, actor, {
    name: "Wanjiku Demo",
    phone: DEMO_PHONE,
    planId: home!.id,
    routerId,
    networkUsername: "wanjiku",
  });
  return true;
}
