import { eq } from "drizzle-orm";
import type { Executor } from "../../db/client.ts";
import { customers, type Language, type paymentIntents } from "../../db/schema/index.ts";
import { displayPhone } from "../../lib/phone.ts";
import { enqueueMessage } from "../outbox.ts";
export type IntentRow = typeof paymentIntents.$inferSelect;

/**
 * How close to a push a paybill confirmation of it can be: the payer answers the prompt within
 * about a minute of it, and M-Pesa refuses the same amount to the same receiver from one payer
 * within two minutes, so a real second payment cannot hide in this window.
 */
export const pushWindowMs = 2 * 60_000;

/** What a payment's messages are written in: the customer's language, or the one the payer chose in the menu. */
export async function languageFor(
  tx: Executor,
  intent: Pick<IntentRow, "customerId" | "language" | "phone">,
): Promise<Language> {
  return (await askerOf(tx, intent)).language;
}

/**
 * Who is told how a payment request ended: the customer who asked, in their language (the prompt
 * may have gone to another number that pays for them), or a payer with no account, in the language
 * they chose in the menu.
 */
async function askerOf(
  tx: Executor,
  intent: Pick<IntentRow, "customerId" | "language" | "phone">,
): Promise<{ phone: string; language: Language }> {
  if (intent.customerId !== null) {
    const [row] = await tx
      .select({ phone: customers.phone, language: customers.language })
      .from(customers)
      .where(eq(customers.id, intent.customerId));
    if (row) return row;
  }
  return { phone: intent.phone, language: intent.language ?? "en" };
}

/** A prompt that ended unpaid, or could not be sent: the person who asked is told, once. */
export async function tellFailure(
  tx: Executor,
  now: Date,
  intent: Pick<IntentRow, "id" | "customerId" | "language" | "phone" | "amountCents">,
  reason: string,
  /** M-Pesa's result code, or `unsent`: the SMS gives the reason in the reader's language. */
  reasonCode?: number | "unsent" | null,
): Promise<void> {
  const asker = await askerOf(tx, intent);
  // The reasons are the payer's ("you cancelled"): a customer whose prompt went to another number
  // is told which number did not pay instead.
  const paidFor = asker.phone !== intent.phone;
  await enqueueMessage(tx, now, {
    recipient: asker.phone,
    language: asker.language,
    ...(paidFor
      ? {
          template: "payment_failed_other",
          params: { amountCents: intent.amountCents, payer: displayPhone(intent.phone) },
        }
      : {
          template: "payment_failed",
          params: { amountCents: intent.amountCents, reason, ...(reasonCode != null ? { reasonCode } : {}) },
        }),
    dedupeKey: `intent:${intent.id}:failed`,
  });
}
