import { eq } from "drizzle-orm";
import { customers, routers } from "../db/schema/index.ts";
import { audit } from "./audit.ts";
import { type Actor, type BillingContext, BillingError } from "./context.ts";
import { enqueueMessage } from "./outbox.ts";
import { createCustomerWithSubscriptionInTx } from "./subscriptions.ts";

export interface SelfSignUp {
  phone: string;
  name: string;
  planId: number;
  language: "en" | "sw";
  area: { name: string; routerId: number | null };
  /** Where the request came from, for the audit entry and the admin's alert. */
  channel: string;
  sessionId: string;
  /** Told of the sign-up by an `admin_alert` SMS (`ADMIN_PHONE`); unset: nobody is. */
  adminPhone?: string;
}

export type SelfSignUpResult =
  | { ok: true; accountNumber: string; amountDueCents: number }
  /** The phone already has an account: the person is told its number rather than given a second one. */
  | { ok: false; reason: "exists"; accountNumber: string }
  | { ok: false; reason: string; message: string };

/**
 * A newcomer signs themselves up: the sign-up (customer, pending subscription on the area's
 * router, first invoice, welcome SMS), an audit entry naming the channel and an alert to the admin
 * for the installation visit, in one transaction, so none of them exists without the others.
 */
export async function selfSignUp(
  ctx: BillingContext,
  actor: Actor,
  input: SelfSignUp,
): Promise<SelfSignUpResult> {
  try {
    const { customer, invoice } = await ctx.db.transaction(async (tx) => {
      // An area set up with a router that is not there (mistyped, or not added yet) must not turn
      // every sign-up from it away: the sign-up waits for an admin to choose the router (/signups).
      const [router] =
        input.area.routerId === null
          ? []
          : await tx.select({ id: routers.id }).from(routers).where(eq(routers.id, input.area.routerId));
      const routerId = router?.id ?? null;
      const created = await createCustomerWithSubscriptionInTx(tx, ctx, actor, {
        name: input.name,
        phone: input.phone,
        language: input.language,
        planId: input.planId,
        routerId,
      });
      const now = ctx.clock.now();
      await audit(tx, actor, now, {
        action: "customer.self_signup",
        entity: "customer",
        entityId: created.customer.id,
        details: {
          accountNumber: created.customer.accountNumber,
          subscriptionId: created.subscription.id,
          planId: input.planId,
          area: input.area.name,
          routerId,
          session: input.sessionId,
        },
      });
      if (input.adminPhone)
        await enqueueMessage(tx, now, {
          recipient: input.adminPhone,
          language: "en",
          template: "admin_alert",
          params: {
            text: `New sign-up on ${input.channel}: ${created.customer.name} (${input.phone}), account ${created.customer.accountNumber}, ${input.area.name}. Service starts with the first payment.`,
          },
          dedupeKey: `signup:${created.customer.id}`,
        });
      return created;
    });
    return { ok: true, accountNumber: customer.accountNumber, amountDueCents: invoice.amountCents };
  } catch (error) {
    // A concurrent sign-up from the same phone loses on the unique phone: it is told the account too.
    if (!(error instanceof BillingError) || error.code === "duplicate_phone") {
      const [existing] = await ctx.db
        .select({ accountNumber: customers.accountNumber })
        .from(customers)
        .where(eq(customers.phone, input.phone));
      if (existing) return { ok: false, reason: "exists", accountNumber: existing.accountNumber };
    }
    if (!(error instanceof BillingError)) throw error;
    return { ok: false, reason: error.code, message: error.message };
  }
}
