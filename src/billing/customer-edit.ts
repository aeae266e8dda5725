import { and, eq, isNotNull, isNull, ne } from "drizzle-orm";
import { chatLinkCodes, chatLinks, customers, messageOutbox } from "../db/schema/index.ts";
import { audit } from "./audit.ts";
import { forgetChatOwner, forgetPhoneChats } from "./chat-links.ts";
import { type Actor, type BillingContext, BillingError } from "./context.ts";

/** E.164, as the customers table holds phones. */
const E164 = /^\+[1-9][0-9]{7,14}$/;

export type CustomerChange = { field: "phone"; phone: string } | { field: "name"; name: string };

/**
 * An admin corrects a customer's name or moves them to a new phone number (a typo when they were
 * added, a new SIM). The phone is who the customer is on USSD, M-Pesa prompts, SMS and WhatsApp, so
 * a new one takes over all of that from now on, and every chat linked to the account is unlinked:
 * the old number (and a Telegram chat that proved it) may now belong to someone else, who must not
 * see the account. The customer links their chats again from the new number.
 */
export async function editCustomer(
  ctx: BillingContext,
  actor: Actor,
  input: { customerId: number; change: CustomerChange },
): Promise<{ before: string; after: string; chatsUnlinked: number }> {
  const { change } = input;
  if (change.field === "name" && !change.name.trim())
    throw new BillingError("invalid_name", "A name is required.");
  if (change.field === "phone" && !E164.test(change.phone))
    throw new BillingError("invalid_phone", "The phone number is not valid.");
  return ctx.db.transaction(async (tx) => {
    const now = ctx.clock.now();
    const [customer] = await tx
      .select()
      .from(customers)
      .where(eq(customers.id, input.customerId))
      .for("no key update");
    if (!customer) throw new BillingError("unknown_customer", "No such customer.");
    if (change.field === "name") {
      const name = change.name.trim();
      if (name === customer.name) throw new BillingError("unchanged", "That is already the name.");
      await tx.update(customers).set({ name }).where(eq(customers.id, customer.id));
      await audit(tx, actor, now, {
        action: "customer.renamed",
        entity: "customer",
        entityId: customer.id,
        details: { from: customer.name, to: name },
      });
      return { before: customer.name, after: name, chatsUnlinked: 0 };
    }
    if (change.phone === customer.phone) throw new BillingError("unchanged", "That is already the number.");
    const [taken] = await tx
      .select({ accountNumber: customers.accountNumber })
      .from(customers)
      .where(and(eq(customers.phone, change.phone), ne(customers.id, customer.id)));
    if (taken)
      throw new BillingError("duplicate_phone", `That number is already account ${taken.accountNumber}.`);
    try {
      await tx.update(customers).set({ phone: change.phone }).where(eq(customers.id, customer.id));
    } catch (error) {
      // Taken meanwhile by another writer (the unique index): the same refusal as above.
      const failure = error as { code?: string; cause?: { code?: string } };
      if ((failure.cause?.code ?? failure.code) === "23505")
        throw new BillingError("duplicate_phone", "That number was just given to another account.");
      throw error;
    }
    // SMS still queued for the old number go to the new one (a receipt, a router login).
    await tx
      .update(messageOutbox)
      .set({ recipient: change.phone })
      .where(
        and(
          eq(messageOutbox.channel, "sms"),
          eq(messageOutbox.recipient, customer.phone),
          eq(messageOutbox.status, "pending"),
        ),
      );
    await tx
      .update(messageOutbox)
      .set({ fallbackRecipient: change.phone })
      .where(and(eq(messageOutbox.fallbackRecipient, customer.phone), eq(messageOutbox.status, "pending")));
    const unlinked = await tx
      .delete(chatLinks)
      .where(eq(chatLinks.customerId, customer.id))
      .returning({ channel: chatLinks.channel, chatId: chatLinks.chatId });
    // A link code texted to the old number links nothing any more.
    await tx.delete(chatLinkCodes).where(eq(chatLinkCodes.customerId, customer.id));
    await forgetPhoneChats(tx, customer.phone);
    // Their places in the menu were the customer's menu: they start over as whoever they are now.
    // What was queued for those chats is not sent there: a notice goes by SMS to the new number,
    // a menu answer nowhere.
    for (const link of unlinked) {
      await forgetChatOwner(tx, { ...link, customerId: customer.id });
      const queuedForChat = and(
        eq(messageOutbox.channel, link.channel),
        eq(messageOutbox.recipient, link.chatId),
        eq(messageOutbox.status, "pending"),
      );
      await tx
        .update(messageOutbox)
        .set({ channel: "sms", recipient: change.phone, fallbackRecipient: null })
        .where(and(queuedForChat, isNull(messageOutbox.content)));
      await tx
        .update(messageOutbox)
        .set({ status: "superseded", lastError: "not sent: the chat was unlinked when the phone changed" })
        .where(and(queuedForChat, isNotNull(messageOutbox.content)));
    }
    await audit(tx, actor, now, {
      action: "customer.phone_changed",
      entity: "customer",
      entityId: customer.id,
      details: { from: customer.phone, to: change.phone, chatsUnlinked: unlinked.length },
    });
    return { before: customer.phone, after: change.phone, chatsUnlinked: unlinked.length };
  });
}
