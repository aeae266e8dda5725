import { eq } from "drizzle-orm";
import type { Executor } from "../../db/client.ts";
import { customers, type paymentIntents } from "../../db/schema/index.ts";
import { enqueueMessage } from "../outbox.ts";
export type IntentRow = typeof paymentIntents.$inferSelect;

export async function languageFor(tx: Executor, customerId: number | null): Promise<"en" | "sw"> {
  if (customerId === null) return "en";
  const [row] = await tx
    .select({ language: customers.language })
    .from(customers)
    .where(eq(customers.id, customerId));
  return row?.language ?? "en";
}
export async function tellFailure(tx: Executor, now: Date, intent: IntentRow, reason: string): Promise<void> {
  await enqueueMessage(tx, now, {
    recipient: intent.phone,
    language: await languageFor(tx, intent.customerId),
    template: "payment_failed",
    params: { amountCents: intent.amountCents, reason },
    dedupeKey: `intent:${intent.id}:failed`,
  });
}
