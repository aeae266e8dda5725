import { and, eq, sql } from "drizzle-orm";
import type { Executor } from "../db/client.ts";
import {
  type ChatChannel,
  channelSessions,
  chatLinks,
  chatReplyRoutes,
  chatSessions,
  customers,
} from "../db/schema/index.ts";

/**
 * A visitor's own phone (shared as their contact) is kept under this `channel_sessions` id, which no
 * menu session can take (their keys are base64url, without `:`); see bots/telegram/visitor-phone.ts.
 */
export const visitorPhoneRowId = (channel: ChatChannel, chatId: string) => `${channel}:phone:${chatId}`;

/**
 * What a chat kept of whose it was, dropped when its link goes (the person unlinked it, or the
 * account moved to another phone). Left behind, each would tie the chat to the account again, or
 * keep the account's notices from the chat it links next.
 */
export async function forgetChatOwner(
  db: Executor,
  link: { channel: ChatChannel; chatId: string; customerId: number },
): Promise<void> {
  const { channel, chatId } = link;
  // The customer's place in their menu means something else to a visitor: the next message starts over.
  await db
    .delete(chatSessions)
    .where(and(eq(chatSessions.channel, channel), eq(chatSessions.chatId, chatId)));
  // A phone the chat shared as a visitor finds its customer and links the chat back on its next message.
  await db.delete(channelSessions).where(eq(channelSessions.id, visitorPhoneRowId(channel, chatId)));
  // A payment or voucher confirmed here a moment ago would still send the account's notices here.
  await db
    .delete(chatReplyRoutes)
    .where(and(eq(chatReplyRoutes.channel, channel), eq(chatReplyRoutes.chatId, chatId)));
  await releaseNoticeChannel(db, link.customerId, channel);
}

/**
 * Linking a chat is the customer choosing it for their notices (receipts, reminders, credentials):
 * from then on they are routed there (migration 0013), with SMS as the fallback. Unlinking the chat
 * brings them back to SMS. An automatic link (WhatsApp knows the number) only chooses when the
 * customer had not chosen already.
 */
export async function chooseNoticeChannel(
  db: Executor,
  customerId: number,
  channel: ChatChannel,
  options: { keepExisting?: boolean } = {},
): Promise<void> {
  await db.execute(
    options.keepExisting
      ? sql`update customers set notify_channel = ${channel} where id = ${customerId} and notify_channel is null`
      : sql`update customers set notify_channel = ${channel} where id = ${customerId}`,
  );
}

/**
 * Notices chosen for the customer's chat on `channel` go by SMS again once no chat of theirs is linked
 * there. Left set, the choice would keep the next chat that links itself (WhatsApp's first message)
 * from being chosen: notices would stay on SMS.
 */
export async function releaseNoticeChannel(db: Executor, customerId: number, channel: ChatChannel) {
  await db.execute(
    sql`update customers set notify_channel = null
        where id = ${customerId} and notify_channel = ${channel}
          and not exists (select 1 from chat_links where customer_id = ${customerId} and channel = ${channel})`,
  );
}

/**
 * A number that left its customer may be someone else's now: chats that shared it as a visitor must
 * not be linked to whoever holds it next, nor get what is sent to it.
 */
export async function forgetPhoneChats(db: Executor, phone: string): Promise<void> {
  await db
    .delete(channelSessions)
    .where(and(eq(channelSessions.phone, phone), sql`strpos(${channelSessions.id}, ':phone:') > 0`));
  await db.delete(chatReplyRoutes).where(eq(chatReplyRoutes.phone, phone));
}

/**
 * Links the chat to `customerId`, chosen for their notices. A chat linked to another account until
 * now is that account's no more: what it kept of that account goes as on an unlink (its notices go
 * by SMS again), or the first account's receipts would keep arriving in a chat that is not theirs.
 */
export async function linkChat(
  db: Executor,
  link: {
    channel: ChatChannel;
    chatId: string;
    customerId: number;
    method: "contact" | "otp";
    at: Date;
    /**
     * The number the link was proven by (a shared contact): linked only while it is still the
     * customer's, read under a lock that waits for a phone change being saved (the lock the link's
     * own update of the customer needs: a shared one would deadlock two links). False: not linked.
     */
    phone?: string;
  },
): Promise<boolean> {
  const { channel, chatId, customerId } = link;
  if (link.phone !== undefined) {
    const [stillTheirs] = await db
      .select({ id: customers.id })
      .from(customers)
      .where(and(eq(customers.id, customerId), eq(customers.phone, link.phone)))
      .for("no key update");
    if (!stillTheirs) return false;
  }
  const [before] = await db
    .select({ customerId: chatLinks.customerId })
    .from(chatLinks)
    .where(and(eq(chatLinks.channel, channel), eq(chatLinks.chatId, chatId)))
    .for("update");
  await db
    .insert(chatLinks)
    .values({ channel, chatId, customerId, method: link.method, linkedAt: link.at })
    .onConflictDoUpdate({
      target: [chatLinks.channel, chatLinks.chatId],
      set: { customerId, method: link.method, linkedAt: link.at },
    });
  if (before && before.customerId !== customerId)
    await forgetChatOwner(db, { channel, chatId, customerId: before.customerId });
  await chooseNoticeChannel(db, customerId, channel);
  return true;
}
