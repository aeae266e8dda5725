import { eq } from "drizzle-orm";
import { customers, type Language } from "../db/schema/index.ts";
import { audit } from "./audit.ts";
import type { Actor, BillingContext } from "./context.ts";

/** The language a customer reads menus and SMS in. Returns false when there is no such customer. */
export async function setCustomerLanguage(
  ctx: BillingContext,
  actor: Actor,
  input: { customerId: number; language: Language },
): Promise<boolean> {
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const [before] = await tx
      .select({ language: customers.language })
      .from(customers)
      .where(eq(customers.id, input.customerId))
      .for("update");
    if (!before) return false;
    if (before.language === input.language) return true;
    await tx.update(customers).set({ language: input.language }).where(eq(customers.id, input.customerId));
    await audit(tx, actor, now, {
      action: "customer.language_changed",
      entity: "customer",
      entityId: input.customerId,
      details: { from: before.language, to: input.language },
    });
    return true;
  });
}
