import { eq, type SQL, sql } from "drizzle-orm";
import {
  type Actor,
  type BillingContext,
  type BillingSettings,
  defaultBillingSettings,
  systemActor,
} from "../../src/billing/context.ts";
import { requestPayment } from "../../src/billing/intents/request.ts";
import { applyPayment } from "../../src/billing/payments.ts";
import { selfSignUp } from "../../src/billing/self-signup.ts";
import { createCustomerWithSubscription, startSubscriptionInTx } from "../../src/billing/subscriptions.ts";
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

/**
 * A self sign-up from `phone` on USSD, in Kahawa West (no router placed yet), to a new plan of
 * `priceCents`: the customer and subscription it opened.
 */
export async function selfSignedUp(
  ctx: BillingContext,
  applicant: { phone: string; name: string; priceCents: number; language?: "en" | "sw"; planName?: string },
) {
  const plan = await createPlan(ctx.db, {
    priceCents: applicant.priceCents,
    ...(applicant.planName ? { name: applicant.planName } : {}),
  });
  const done = await selfSignUp(ctx, job, {
    phone: applicant.phone,
    name: applicant.name,
    planId: plan.id,
    language: applicant.language ?? "en",
    area: { name: "Kahawa West", routerId: null },
    channel: "ussd",
    sessionId: `signup-${applicant.phone}`,
  });
  if (!done.ok) throw new Error("sign-up failed");
  const [row] = await ctx.db
    .select({ customer: customers, subscription: subscriptions })
    .from(customers)
    .innerJoin(subscriptions, eq(subscriptions.customerId, customers.id))
    .where(eq(customers.accountNumber, done.accountNumber));
  return { ...row!, plan, accountNumber: done.accountNumber };
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

/**
 * Customers on the plan `planId()` names, and paybill payments to them: each payment's receipt is a
 * notice (tests of where and how notices go).
 */
export function receiptNotices(ctx: () => BillingContext, planId: () => number) {
  let receiptSeq = 0;
  return {
    async customer() {
      const created = await createCustomerWithSubscription(ctx(), admin, {
        name: "Achieng Otieno",
        phone: uniquePhone(),
        planId: planId(),
      });
      return created.customer;
    },
    async pay(customerId: number, amountCents = 50_000) {
      const receipt = `SKC${String(++receiptSeq).padStart(7, "0")}`;
      await applyPayment(ctx(), admin, {
        customerId,
        method: "mpesa_c2b",
        provider: "mpesa",
        providerRef: receipt,
        amountCents,
      });
      return receipt;
    },
  };
}

/** Another subscription for a customer who has one, on `plan`, with no router yet. */
export async function anotherSubscription(
  ctx: BillingContext,
  customerId: number,
  plan: typeof plans.$inferSelect,
  networkUsername: string,
) {
  const [row] = await ctx.db.select().from(customers).where(eq(customers.id, customerId));
  const { subscription } = await ctx.db.transaction((tx) =>
    startSubscriptionInTx(tx, ctx, admin, row!, plan, {
      routerId: null,
      networkUsername,
      networkPassword: "secret-pw",
    }),
  );
  return subscription;
}
