import { eq, type SQL, sql } from "drizzle-orm";
import {
  type Actor,
  type BillingContext,
  type BillingSettings,
  defaultBillingSettings,
  systemActor,
} from "../../src/billing/context.ts";
import { requestPayment } from "../../src/billing/intents/request.ts";
import { createCustomerWithSubscription } from "../../src/billing/subscriptions.ts";
import { FakeClock } from "../../src/clock.ts";
import { type Db, queryRows } from "../../src/db/client.ts";
import { customers, ledgerEntries, paymentIntents, plans, subscriptions } from "../../src/db/schema/index.ts";

export const admin: Actor = { kind: "admin", id: "tg:1001", channel: "telegram" };
export const job: Actor = systemActor("test");

export function billingContext(
  db: Db,
  clock = new FakeClock("2026-03-01T06:00:00Z"),
  settings: Partial<BillingSettings> = {},
) {
  const ctx: BillingContext = { db, clock, settings: { ...defaultBillingSettings, ...settings } };
  return { ctx, clock };
}

/**
 * Asks for a prompt paying `amountCents` to a customer's account and leaves it as the dispatcher
 * leaves one M-Pesa accepted: its checkout id, the account it showed, sent at `sentAt`.
 */
export async function acceptedBalancePush(
  ctx: BillingContext,
  push: {
    customerId: number;
    phone: string;
    amountCents: number;
    checkoutId: string;
    accountReference: string;
    sentAt: Date;
  },
): Promise<number> {
  const asked = await requestPayment(
    ctx,
    { kind: "subscriber", id: push.phone },
    {
      phone: push.phone,
      purpose: "balance",
      amountCents: push.amountCents,
      customerId: push.customerId,
      channel: "ussd",
    },
  );
  if (!asked.ok) throw new Error(asked.message);
  await ctx.db
    .update(paymentIntents)
    .set({
      checkoutRequestId: push.checkoutId,
      accountReference: push.accountReference,
      sentAt: push.sentAt,
      sendAttempts: 1,
    })
    .where(eq(paymentIntents.id, asked.intentId));
  return asked.intentId;
}

let planSeq = 0;
export async function createPlan(
  db: Db,
  values: Partial<typeof plans.$inferInsert> & { priceCents: number },
): Promise<typeof plans.$inferSelect> {
  planSeq++;
  const [plan] = await db
    .insert(plans)
    .values({
      code: `p${planSeq}-${Math.random().toString(36).slice(2, 7)}`,
      name: `Home ${planSeq}`,
      kind: "pppoe",
      periodUnit: "months",
      periodCount: 1,
      rateLimit: "5M/10M",
      ...values,
    })
    .returning();
  return plan!;
}

let phoneSeq = 0;
export function uniquePhone(): string {
  phoneSeq++;
  return `+2547${String(process.pid % 100).padStart(2, "0")}${String(phoneSeq + Math.floor(Math.random() * 1000) * 1000).padStart(6, "0")}`;
}

/** A subscriber who has paid their first period, so the subscription is active. */
export async function activeSubscriber(ctx: BillingContext, planId: number, name = "Wanjiku Kamau") {
  const { applyPayment } = await import("../../src/billing/payments.ts");
  const created = await createCustomerWithSubscription(ctx, admin, { name, phone: uniquePhone(), planId });
  await applyPayment(ctx, admin, {
    customerId: created.customer.id,
    method: "cash",
    provider: "cash",
    providerRef: `first-${created.customer.id}`,
    amountCents: created.invoice.amountCents,
  });
  const [subscription] = await ctx.db
    .select()
    .from(subscriptions)
    .where(eq(subscriptions.id, created.subscription.id));
  return { customer: created.customer, subscription: subscription! };
}

export async function ledgerSum(db: Db, customerId: number): Promise<number> {
  const [row] = await db
    .select({ s: sql<string>`coalesce(sum(${ledgerEntries.amountCents}),0)` })
    .from(ledgerEntries)
    .where(eq(ledgerEntries.customerId, customerId));
  return Number(row!.s);
}

export async function count(db: Db, query: SQL): Promise<number> {
  const rows = await queryRows<{ n: number }>(db, query);
  return Number(rows[0]?.n ?? 0);
}

export async function reloadCustomer(db: Db, id: number) {
  const [row] = await db.select().from(customers).where(eq(customers.id, id));
  return row!;
}
