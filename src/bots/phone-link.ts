import { and, eq } from "drizzle-orm";
import { chooseNoticeChannel } from "../billing/chat-links.ts";
import type { Db } from "../db/client.ts";
import { type ChatChannel, chatLinks, customers } from "../db/schema/index.ts";
import { checkPhone } from "../lib/phone.ts";

/**
 * WhatsApp (Web and Cloud API) proves that a sender owns their number, so a chat needs no other
 * linking: the first message from a customer's phone links the chat to that customer.
 */
export interface PhoneChat {
  /** The phone the chat speaks for (a linked customer's, else the sender's own); null: not served. */
  phone: string | null;
  /** The account number when this message linked the chat. */
  newlyLinked: string | null;
}

/**
 * The phone a WhatsApp chat speaks for. `digits` is the sender's number in international form
 * without `+` (the chat id). A linked chat keeps its customer; an unlinked one is looked up again
 * each time, so a number given to a customer later links on its next message.
 */
export async function phoneChat(
  db: Db,
  channel: ChatChannel,
  digits: string,
  servedCountries?: readonly string[],
): Promise<PhoneChat> {
  const [linked] = await db
    .select({ phone: customers.phone })
    .from(chatLinks)
    .innerJoin(customers, eq(customers.id, chatLinks.customerId))
    .where(and(eq(chatLinks.channel, channel), eq(chatLinks.chatId, digits)));
  if (linked) return { phone: linked.phone, newlyLinked: null };

  const verdict = checkPhone(`+${digits}`, servedCountries);
  if (verdict.kind !== "served") return { phone: null, newlyLinked: null };
  return db.transaction(async (tx) => {
    // Locked while the link is written: a phone change being saved is waited for, and the number
    // read again after it (a link to the account's old number would outlive the change's unlinking).
    // The lock the link's update of the customer needs: two links holding a shared one would each
    // wait for the other.
    const [customer] = await tx
      .select({ id: customers.id, phone: customers.phone, accountNumber: customers.accountNumber })
      .from(customers)
      .where(eq(customers.phone, verdict.e164))
      .for("no key update");
    // A visitor's number is as proven as a customer's: it is the phone M-Pesa asks when they buy a
    // voucher, so WhatsApp never needs to ask for it (chat-menu's `needsPhone` stays unset).
    if (!customer) return { phone: verdict.e164, newlyLinked: null };
    const inserted = await tx
      .insert(chatLinks)
      .values({ channel, chatId: digits, customerId: customer.id, method: "phone" })
      .onConflictDoNothing()
      .returning({ id: chatLinks.id });
    if (inserted.length > 0) await chooseNoticeChannel(tx, customer.id, channel, { keepExisting: true });
    return { phone: customer.phone, newlyLinked: inserted.length > 0 ? customer.accountNumber : null };
  });
}
