import { eq } from "drizzle-orm";
import { audit } from "../billing/audit.ts";
import { type Actor, type BillingContext, BillingError } from "../billing/context.ts";
import { enqueueMessage } from "../billing/outbox.ts";
import { createCustomerWithSubscription } from "../billing/subscriptions.ts";
import { customers } from "../db/schema/index.ts";
import type { MenuSession, SignUpRequest, SignUpResult } from "./types.ts";

/**
 * A newcomer signs themselves up from the menu: the billing core's sign-up (customer, pending
 * subscription on the area's router, first invoice, welcome SMS) plus, in the same transaction, an
 * audit entry naming the channel and an alert to the admin, so none of them exists without the others.
 */
export async function selfSignUp(
  ctx: BillingContext,
  actor: Actor,
  phone: string,
  session: MenuSession,
  request: SignUpRequest,
): Promise<SignUpResult> {
  try {
    const { customer, invoice } = await createCustomerWithSubscription(ctx, actor, {
      name: request.name,
      phone,
      language: request.language,
      planId: request.planId,
      routerId: request.area.routerId,
      alsoRecord: async (tx, now, created) => {
        await audit(tx, actor, now, {
          action: "customer.self_signup",
          entity: "customer",
          entityId: created.customer.id,
          details: {
            accountNumber: created.customer.accountNumber,
            subscriptionId: created.subscription.id,
            planId: request.planId,
            area: request.area.name,
            routerId: request.area.routerId,
            session: session.id,
          },
        });
        if (!request.adminPhone) return;
        await enqueueMessage(tx, now, {
          recipient: request.adminPhone,
          language: "en",
          template: "admin_alert",
          params: {
            text: `New sign-up on ${session.channel}: ${created.customer.name} (${phone}), account ${created.customer.accountNumber}, ${request.area.name}. Service starts with the first payment.`,
          },
          dedupeKey: `signup:${created.customer.id}`,
        });
      },
    });
    return { ok: true, accountNumber: customer.accountNumber, amountDueCents: invoice.amountCents };
  } catch (error) {
    // Another sign-up of this phone may have won the race past the core's check (the unique index
    // refused this one): either way the person is told the account that exists.
    if (!(error instanceof BillingError) || error.code === "duplicate_phone") {
      const [existing] = await ctx.db
        .select({ accountNumber: customers.accountNumber })
        .from(customers)
        .where(eq(customers.phone, phone));
      if (existing) return { ok: false, reason: "exists", accountNumber: existing.accountNumber };
    }
    if (!(error instanceof BillingError)) throw error;
    return { ok: false, reason: error.code, message: error.message };
  }
}
