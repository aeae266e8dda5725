import { randomInt } from "node:crypto";
import { eq, sql } from "drizzle-orm";
import { type Executor, queryRows } from "../db/client.ts";
import {
  customers,
  invoiceLines,
  invoices,
  type Language,
  plans,
  subscriptions,
} from "../db/schema/index.ts";
import { planNameIn } from "./accounts.ts";
import { audit } from "./audit.ts";
import { type Actor, type BillingContext, BillingError } from "./context.ts";
import { oneCustomer, postLedgerEntry, settleOpenInvoices } from "./ledger.ts";
import { lockCustomerMoney } from "./money-lock.ts";
import { enqueueMessage, enqueueProvisioning } from "./outbox.ts";
import { periodAt } from "./service-periods.ts";

const E164 = /^\+[1-9][0-9]{7,14}$/;
const PASSWORD_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";

export function randomPassword(length = 10): string {
  let out = "";
  for (let i = 0; i < length; i++) out += PASSWORD_ALPHABET[randomInt(PASSWORD_ALPHABET.length)];
  return out;
}

export interface NewSubscriber {
  name: string;
  /** E.164; adapters normalise what people type before calling. */
  phone: string;
  language?: Language;
  /** Defaults to `TD` + the customer number, e.g. TD00042. */
  accountNumber?: string;
  planId: number;
  routerId?: number | null;
  networkUsername?: string;
  networkPassword?: string;
}

/**
 * Signs up a subscriber: customer, subscription waiting for its first payment, the first period's
 * invoice, and the router account (created disabled until paid).
 */
export function createCustomerWithSubscription(ctx: BillingContext, actor: Actor, input: NewSubscriber) {
  return ctx.db.transaction((tx) => createCustomerWithSubscriptionInTx(tx, ctx, actor, input));
}

/** `createCustomerWithSubscription` in the caller's transaction (a self sign-up adds its own records). */
export async function createCustomerWithSubscriptionInTx(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  input: NewSubscriber,
) {
  const name = input.name.trim();
  if (!name) throw new BillingError("invalid_name", "A name is required.");
  if (!E164.test(input.phone)) throw new BillingError("invalid_phone", "The phone number is not valid.");
  const now = ctx.clock.now();
  const [plan] = await tx.select().from(plans).where(eq(plans.id, input.planId));
  if (!plan?.active) throw new BillingError("unknown_plan", "That plan does not exist or is retired.");
  const [existing] = await tx
    .select({ id: customers.id })
    .from(customers)
    .where(eq(customers.phone, input.phone));
  if (existing)
    throw new BillingError("duplicate_phone", "A customer with that phone number already exists.");

  const [inserted] = await tx
    .insert(customers)
    .values({
      accountNumber: input.accountNumber?.trim() || `pending-${now.getTime()}-${randomInt(1e9)}`,
      phone: input.phone,
      name,
      language: input.language ?? "en",
    })
    .returning();
  if (!inserted) throw new Error("customer insert returned nothing");
  let customer = inserted;
  if (!input.accountNumber?.trim()) {
    const [renamed] = await tx
      .update(customers)
      .set({ accountNumber: await freeAccountNumber(tx, inserted.id) })
      .where(eq(customers.id, inserted.id))
      .returning();
    customer = renamed ?? inserted;
  }

  return startSubscriptionInTx(tx, ctx, actor, customer, plan, {
    routerId: input.routerId ?? null,
    networkUsername: input.networkUsername?.trim() || customer.accountNumber.toLowerCase(),
    networkPassword: input.networkPassword || randomPassword(),
  });
}

type Customer = typeof customers.$inferSelect;
type Plan = typeof plans.$inferSelect;

/**
 * `TD` and the customer's row id, unless an imported account (or its PPPoE username, the account
 * number in lower case) already has it: then the first of `TD00003A`, `TD00003B`, … that is free.
 */
async function freeAccountNumber(tx: Executor, customerId: number): Promise<string> {
  const base = `TD${String(customerId).padStart(5, "0")}`;
  const taken = await queryRows<{ name: string }>(
    tx,
    sql`select upper(account_number) as name from customers where upper(account_number) like ${`${base}%`}
        union select upper(network_username) from subscriptions where upper(network_username) like ${`${base}%`}`,
  );
  const used = new Set(taken.map((t) => t.name));
  for (const suffix of ["", ..."ABCDEFGHJKLMNPQRSTUVWXYZ"])
    if (!used.has(base + suffix)) return base + suffix;
  throw new Error(`no free account number near ${base}`);
}

/**
 * A customer's new subscription, waiting for its first payment: the first period's invoice (paid at
 * once from any credit they hold), the router account (disabled until paid), the welcome SMS.
 */
export async function startSubscriptionInTx(
  tx: Executor,
  ctx: BillingContext,
  actor: Actor,
  customer: Customer,
  plan: Plan,
  input: { routerId: number | null; networkUsername: string; networkPassword: string },
) {
  const now = ctx.clock.now();
  const money = await lockCustomerMoney(tx, [customer.id]);
  const period = periodAt(now, plan, 0, ctx.settings);
  const [subscription] = await tx
    .insert(subscriptions)
    .values({
      customerId: customer.id,
      planId: plan.id,
      routerId: input.routerId,
      networkUsername: input.networkUsername,
      networkPassword: input.networkPassword,
      status: "pending",
      currentPeriodStart: period.start,
      currentPeriodEnd: period.end,
      billingAnchor: now,
      periodIndex: 0,
      periodPriceCents: plan.priceCents,
    })
    .returning();
  if (!subscription) throw new Error("subscription insert returned nothing");

  const [invoice] = await tx
    .insert(invoices)
    .values({
      customerId: customer.id,
      subscriptionId: subscription.id,
      kind: "recurring",
      periodStart: period.start,
      periodEnd: period.end,
      amountCents: plan.priceCents,
      dueAt: now,
      issuedAt: now,
    })
    .returning();
  if (!invoice) throw new Error("invoice insert returned nothing");
  await tx
    .insert(invoiceLines)
    .values({ invoiceId: invoice.id, description: plan.name, amountCents: plan.priceCents });
  await postLedgerEntry(tx, money, {
    customerId: customer.id,
    kind: "invoice",
    amountCents: -plan.priceCents,
    invoiceId: invoice.id,
    memo: `${plan.name}, first period`,
    at: now,
  });
  await settleOpenInvoices(tx, money, now, oneCustomer(customer.id));

  await enqueueProvisioning(tx, now, {
    action: "ensure_account",
    subscriptionId: subscription.id,
    routerId: subscription.routerId,
  });
  await enqueueMessage(tx, now, {
    recipient: customer.phone,
    language: customer.language,
    template: "welcome",
    params: {
      name: customer.name,
      account: customer.accountNumber,
      plan: planNameIn(plan, customer.language),
    },
    // Per subscription (a customer who comes back is welcomed again), apart from the older
    // per-customer `welcome:<customer id>` keys.
    dedupeKey: `welcome-sub:${subscription.id}`,
  });
  await audit(tx, actor, now, {
    action: "subscription.created",
    entity: "subscription",
    entityId: subscription.id,
    details: { customerId: customer.id, planId: plan.id, invoiceId: invoice.id },
  });
  return { customer, subscription, invoice };
}
