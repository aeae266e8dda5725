import { randomInt } from "node:crypto";
import { and, eq, gt, gte, inArray, or, sql } from "drizzle-orm";
import { type Executor, queryRows } from "../db/client.ts";
import {
  customers,
  invoiceLines,
  invoices,
  type Language,
  ledgerEntries,
  plans,
  subscriptions,
} from "../db/schema/index.ts";
import { planNameIn } from "./accounts.ts";
import { audit } from "./audit.ts";
import { type Actor, type BillingContext, BillingError } from "./context.ts";
import { restartDunningInTx } from "./dunning.ts";
import { oneCustomer, postLedgerEntry, settleOpenInvoices } from "./ledger.ts";
import { lockCustomerMoney, lockSubscriptionCustomer } from "./money-lock.ts";
import { enqueueMessage, enqueueProvisioning } from "./outbox.ts";
import { periodBoundary } from "./periods.ts";
import { periodAt, periodsCountedFrom } from "./service-periods.ts";

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

/** The subscription, locked after its customer's money (the lock order of money-lock.ts). */
async function lockedSubscription(tx: Executor, subscriptionId: number) {
  const money = await lockSubscriptionCustomer(tx, subscriptionId);
  const [row] = await tx
    .select({ subscription: subscriptions, plan: plans, customer: customers })
    .from(subscriptions)
    .innerJoin(plans, eq(plans.id, subscriptions.planId))
    .innerJoin(customers, eq(customers.id, subscriptions.customerId))
    .where(eq(subscriptions.id, subscriptionId))
    .for("update", { of: subscriptions });
  if (!row) throw new BillingError("unknown_subscription", `No subscription ${subscriptionId}.`);
  return { ...row, money };
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

function requireReason(reason: string | undefined): string {
  const trimmed = reason?.trim();
  if (!trimmed) throw new BillingError("reason_required", "Say why: the reason goes into the audit log.");
  return trimmed;
}

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
    const { subscription } = await lockedSubscription(tx, input.subscriptionId);
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

/**
 * Gives days of service for free (an outage, goodwill): the period ends that many calendar days
 * later and the periods after it count from there, keeping their length. Bills already issued for
 * the next period move with it, and their dunning starts over from the new date.
 */
export async function extendSubscription(
  ctx: BillingContext,
  actor: Actor,
  input: { subscriptionId: number; days: number; reason: string },
) {
  const reason = requireReason(input.reason);
  if (!Number.isInteger(input.days) || input.days < 1 || input.days > 366) {
    throw new BillingError("invalid_days", "Extend by 1 to 366 whole days.");
  }
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const { subscription, plan } = await lockedSubscription(tx, input.subscriptionId);
    if (subscription.status === "cancelled")
      throw new BillingError("cancelled", "That subscription is cancelled.");
    const oldEnd = subscription.currentPeriodEnd;
    // Calendar days from the paid-until date; the periods after it count from the new date (an
    // anchor moved by days and counted in months again could land on the same month end).
    const newEnd = periodBoundary(oldEnd, "days", input.days, 1, ctx.settings.timezone);
    const [updated] = await tx
      .update(subscriptions)
      .set({ ...periodsCountedFrom(newEnd), currentPeriodEnd: newEnd })
      .where(eq(subscriptions.id, subscription.id))
      .returning();
    const [scheduled] = subscription.nextPlanId
      ? await tx.select().from(plans).where(eq(plans.id, subscription.nextPlanId))
      : [];
    const following = periodAt(newEnd, scheduled ?? plan, 0, ctx.settings);
    // The next period's bill moves with it, and so do plan changes' top-ups due when it starts.
    const moved = await tx
      .update(invoices)
      .set({ periodStart: following.start, periodEnd: following.end, dueAt: following.start })
      .where(
        and(
          eq(invoices.subscriptionId, subscription.id),
          eq(invoices.kind, "recurring"),
          eq(invoices.periodStart, oldEnd),
        ),
      )
      .returning({ id: invoices.id });
    const movedTopUps = await tx
      .update(invoices)
      .set({ dueAt: following.start })
      .where(
        and(
          eq(invoices.subscriptionId, subscription.id),
          eq(invoices.kind, "proration"),
          eq(invoices.dueAt, oldEnd),
          sql`${invoices.status} <> 'void'`,
        ),
      )
      .returning({ id: invoices.id });
    await restartDunningInTx(
      tx,
      [...moved, ...movedTopUps].map((i) => i.id),
      { moved: true },
    );
    await audit(tx, actor, now, {
      action: "subscription.extended",
      entity: "subscription",
      entityId: subscription.id,
      reason,
      details: { days: input.days, from: oldEnd.toISOString(), to: newEnd.toISOString() },
    });
    return updated!;
  });
}

/**
 * Ends a subscription. Invoices for periods not yet started (for a subscriber cut off for
 * non-payment, not served) are voided and whatever was paid on them returns to the customer's credit; so are a plan change's bills for those periods (the next
 * period at the new price), and a plan change's credit on a voided period is taken back, since the
 * whole period's price already returns. The router account is removed.
 */
export async function cancelSubscription(
  ctx: BillingContext,
  actor: Actor,
  input: { subscriptionId: number; reason: string },
) {
  const reason = requireReason(input.reason);
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const { subscription, money } = await lockedSubscription(tx, input.subscriptionId);
    if (subscription.status === "cancelled") return subscription;
    // Not served: a sign-up's whole first period; a subscriber cut off for non-payment, everything
    // from the end of the last period paid for (the renewal they never had); else from now.
    const unservedFrom =
      subscription.status === "pending"
        ? subscription.currentPeriodStart
        : subscription.status === "suspended" &&
            subscription.suspendedReason === "dunning" &&
            subscription.currentPeriodEnd <= now
          ? subscription.currentPeriodEnd
          : now;
    const unserved = await tx
      .select()
      .from(invoices)
      .where(
        and(
          eq(invoices.subscriptionId, subscription.id),
          sql`${invoices.status} <> 'void'`,
          or(
            and(eq(invoices.kind, "recurring"), gte(invoices.periodStart, unservedFrom)),
            // A plan change's charge for a period not started yet (due when that period starts).
            and(eq(invoices.kind, "proration"), gt(invoices.dueAt, unservedFrom)),
          ),
        ),
      );
    for (const invoice of unserved) {
      await tx
        .update(invoices)
        .set({ status: "void", paidCents: 0, paidAt: null })
        .where(eq(invoices.id, invoice.id));
      await postLedgerEntry(tx, money, {
        customerId: subscription.customerId,
        kind: "adjustment",
        amountCents: invoice.amountCents,
        invoiceId: invoice.id,
        memo: `invoice ${invoice.id} voided: subscription cancelled`,
        at: now,
      });
    }
    // A downgrade's credit on a voided period ("next period at the cheaper plan"): the period's whole
    // price is already back, so the credit is taken back too.
    const voided = unserved.filter((i) => i.kind === "recurring").map((i) => i.id);
    const credits =
      voided.length === 0
        ? []
        : await tx
            .select()
            .from(ledgerEntries)
            .where(and(eq(ledgerEntries.kind, "credit"), inArray(ledgerEntries.invoiceId, voided)));
    for (const credit of credits)
      await postLedgerEntry(tx, money, {
        customerId: subscription.customerId,
        kind: "adjustment",
        amountCents: -credit.amountCents,
        invoiceId: credit.invoiceId,
        memo: `credit on invoice ${credit.invoiceId} taken back: subscription cancelled`,
        at: now,
      });
    await settleOpenInvoices(tx, money, now, oneCustomer(subscription.customerId));
    const [updated] = await tx
      .update(subscriptions)
      .set({ status: "cancelled", cancelledAt: now, nextPlanId: null })
      .where(eq(subscriptions.id, subscription.id))
      .returning();
    await enqueueProvisioning(tx, now, {
      action: "remove_account",
      subscriptionId: subscription.id,
      routerId: subscription.routerId,
    });
    await audit(tx, actor, now, {
      action: "subscription.cancelled",
      entity: "subscription",
      entityId: subscription.id,
      reason,
      details: { voidedInvoices: unserved.map((i) => i.id) },
    });
    return updated!;
  });
}
