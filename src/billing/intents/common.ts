import { eq } from "drizzle-orm";
import type { Executor } from "../../db/client.ts";
import { customers, type Language, type paymentIntents } from "../../db/schema/index.ts";
import { enqueueMessage } from "../outbox.ts";
export type IntentRow = typeof paymentIntents.$inferSelect;

/** What a payment's messages are written in: the customer's language, or the one the payer chose in the menu. */
export async function languageFor(
  tx: Executor,
  intent: Pick<IntentRow, "customerId" | "language">,
): Promise<Language> {
  if (intent.customerId === null) return intent.language ?? "en";
  const [row] = await tx
    .select({ language: customers.language })
    .from(customers)
    .where(eq(customers.id, intent.customerId));
  return row?.language ?? intent.language ?? "en";
}
export async function tellFailure(tx: Executor, now: Date, intent: IntentRow, reason: string): Promise<void> {
  await enqueueMessage(tx, now, {
    recipient: intent.phone,
    language: await languageFor(tx, intent),
    template: "payment_failed",
    params: { amountCents: intent.amountCents, reason },
    dedupeKey: `intent:${intent.id}:failed`,
  });
}
