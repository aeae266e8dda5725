import { and, asc, desc, eq, isNull, sql } from "drizzle-orm";
import type { Db, Executor } from "../db/client.ts";
import { auditLog, customers, plans, routers, subscriptions } from "../db/schema/index.ts";
import { audit } from "./audit.ts";
import { cancelSubscription } from "./cancel-subscription.ts";
import { type Actor, type BillingContext, BillingError } from "./context.ts";
import { balanceOf } from "./ledger.ts";
import { formatKes } from "./money.ts";
import { lockSubscriptionCustomer } from "./money-lock.ts";
import { enqueueMessage, enqueueProvisioning } from "./outbox.ts";

/**
 * Self sign-ups waiting for an admin: the subscriptions a newcomer created (audit
 * `customer.self_signup`, src/billing/self-signup.ts) that are still pending and that no admin has
 * approved yet (audit `signup.approved`). Approving puts the subscription on a router (the area's,
 * or one the admin picks) and creates its account there, disabled until the first payment as for any
 * sign-up; rejecting cancels it (its invoice voided, so nothing is owed) and tells the person, and
 * money paid to the account after that waits in the unmatched queue (closed-accounts.ts).
 * There is no approval column: the audit log is the record, as it already is for the sign-up.
 */

export interface PendingSignup {
  subscriptionId: number;
  customerId: number;
  accountNumber: string;
  name: string;
  phone: string;
  planName: string;
  area: string | null;
  routerId: number | null;
  routerName: string | null;
  at: Date;
}

const signupSubscriptionId = sql`(${auditLog.details}->>'subscriptionId')::bigint`;

function pendingQuery(db: Executor, subscriptionId?: number) {
  return db
    .select({
      subscriptionId: subscriptions.id,
      customerId: customers.id,
      accountNumber: customers.accountNumber,
      name: customers.name,
      phone: customers.phone,
      planName: plans.name,
      area: sql<string | null>`${auditLog.details}->>'area'`,
      routerId: subscriptions.routerId,
      routerName: routers.name,
      at: auditLog.at,
    })
    .from(auditLog)
    .innerJoin(subscriptions, eq(subscriptions.id, signupSubscriptionId))
    .innerJoin(customers, eq(customers.id, subscriptions.customerId))
    .innerJoin(plans, eq(plans.id, subscriptions.planId))
    .leftJoin(routers, eq(routers.id, subscriptions.routerId))
    .where(
      and(
        eq(auditLog.action, "customer.self_signup"),
        eq(subscriptions.status, "pending"),
        subscriptionId === undefined ? undefined : eq(subscriptions.id, subscriptionId),
        sql`not exists (select 1 from audit_log a where a.action = 'signup.approved' and a.entity = 'subscription' and a.entity_id = ${subscriptions.id}::text)`,
      ),
    );
}

/** The sign-ups waiting longest first: people are answered in the order they asked. */
export async function listPendingSignups(db: Executor, limit = 20): Promise<PendingSignup[]> {
  return pendingQuery(db).orderBy(asc(auditLog.at), asc(subscriptions.id)).limit(limit);
}

/** How many self sign-ups wait for an admin in all (the list shows the newest `limit`). */
export async function countPendingSignups(db: Executor): Promise<number> {
  const [row] = await db.select({ n: sql<number>`count(*)::int` }).from(pendingQuery(db).as("pending"));
  return Number(row?.n ?? 0);
}

/**
 * Self sign-ups that paid before any router was theirs (an area without one): their service runs
 * and is billed, but nothing serves them until an admin puts them on a router (`/place`).
 */
export async function listPaidAwaitingRouter(db: Executor, limit = 20) {
  return db
    .select({
      accountNumber: customers.accountNumber,
      name: customers.name,
      area: sql<string | null>`${auditLog.details}->>'area'`,
    })
    .from(auditLog)
    .innerJoin(subscriptions, eq(subscriptions.id, signupSubscriptionId))
    .innerJoin(customers, eq(customers.id, subscriptions.customerId))
    .where(
      and(
        eq(auditLog.action, "customer.self_signup"),
        sql`${subscriptions.status} in ('active', 'suspended')`,
        isNull(subscriptions.routerId),
      ),
    )
    .orderBy(desc(auditLog.at))
    .limit(limit);
}

async function pendingSignup(tx: Executor, subscriptionId: number): Promise<PendingSignup> {
  const [found] = await pendingQuery(tx, subscriptionId);
  if (!found)
    throw new BillingError(
      "not_pending_signup",
      "That sign-up is no longer waiting (approved, rejected or paid).",
    );
  return found;
}

/** An admin approves a self sign-up, on `routerId` when it has none yet. */
export function approveSignup(
  ctx: BillingContext,
  actor: Actor,
  input: { subscriptionId: number; routerId?: number | null },
) {
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    await tx
      .select({ id: subscriptions.id })
      .from(subscriptions)
      .where(eq(subscriptions.id, input.subscriptionId))
      .for("update");
    const signup = await pendingSignup(tx, input.subscriptionId);
    let routerId = signup.routerId;
    if (routerId === null) {
      if (input.routerId == null)
        throw new BillingError("router_required", "Choose the router this subscriber will be on.");
      const [router] = await tx
        .select({ id: routers.id })
        .from(routers)
        .where(eq(routers.id, input.routerId));
      if (!router) throw new BillingError("unknown_router", "That router does not exist.");
      routerId = router.id;
      await tx.update(subscriptions).set({ routerId }).where(eq(subscriptions.id, signup.subscriptionId));
    }
    await enqueueProvisioning(tx, now, {
      action: "ensure_account",
      subscriptionId: signup.subscriptionId,
      routerId,
    });
    await audit(tx, actor, now, {
      action: "signup.approved",
      entity: "subscription",
      entityId: signup.subscriptionId,
      details: { customerId: signup.customerId, routerId, assignedRouter: signup.routerId === null },
    });
    return { ...signup, routerId };
  });
}

/**
 * An admin rejects a self sign-up: cancelled (invoice voided, router account removed), the account
 * closed to payments (closed-accounts.ts), the person told. Refused while the account holds money.
 */
export function rejectSignup(
  ctx: BillingContext,
  actor: Actor,
  input: { subscriptionId: number; reason: string },
) {
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const inTx: BillingContext = { ...ctx, db: tx as unknown as Db };
    // The customer's money first, then the subscription (the lock order of money-lock.ts).
    await lockSubscriptionCustomer(tx, input.subscriptionId);
    await tx
      .select({ id: subscriptions.id })
      .from(subscriptions)
      .where(eq(subscriptions.id, input.subscriptionId))
      .for("update");
    const signup = await pendingSignup(tx, input.subscriptionId);
    await cancelSubscription(inTx, actor, { subscriptionId: signup.subscriptionId, reason: input.reason });
    // Money paid before the rejection (a payment that committed first, not enough to start the
    // service) would stay on an account nobody reads: the admin decides what becomes of it first.
    const heldCents = await balanceOf(tx, signup.customerId);
    if (heldCents > 0)
      throw new BillingError(
        "signup_has_money",
        `${signup.accountNumber} has ${formatKes(heldCents)} paid in already: approve the sign-up, or give the money back and take it off the balance, then reject.`,
      );
    await tx.update(customers).set({ status: "inactive" }).where(eq(customers.id, signup.customerId));
    const [customer] = await tx.select().from(customers).where(eq(customers.id, signup.customerId));
    if (customer)
      await enqueueMessage(tx, now, {
        recipient: customer.phone,
        language: customer.language,
        template: "signup_rejected",
        params: { account: customer.accountNumber },
        dedupeKey: `signup_rejected:${signup.subscriptionId}`,
      });
    await audit(tx, actor, now, {
      action: "signup.rejected",
      entity: "subscription",
      entityId: signup.subscriptionId,
      reason: input.reason,
      details: { customerId: signup.customerId },
    });
    return signup;
  });
}
