import { and, eq } from "drizzle-orm";
import type { Clock } from "../../clock.ts";
import type { Db } from "../../db/client.ts";
import { chatLinks, customers, idempotencyKeys } from "../../db/schema/index.ts";
import { checkPhone } from "../../lib/phone.ts";
import type { Logger } from "../../logger.ts";
import type { ChatMenu } from "../chat-menu.ts";
import type { GraphClient } from "./graph.ts";
import type { InboundMessage } from "./inbound.ts";
import { renderView, textMessage } from "./render.ts";
import { waText } from "./texts.ts";

/**
 * One inbound WhatsApp message through the shared chat menu, answered through the Graph API. Like
 * the Telegram bot it keeps nothing in memory: the link, the place in the menu and the messages
 * already handled are all in PostgreSQL, so any instance can take any delivery.
 */

export const CHANNEL = "whatsapp_cloud";

export interface WhatsAppDeps {
  db: Db;
  chatMenu: ChatMenu;
  graph: GraphClient;
  clock: Clock;
  logger: Logger;
  /** Countries whose numbers may link (`SERVED_COUNTRIES`). */
  servedCountries?: readonly string[];
}

/**
 * Claims a message id: true only for the first delivery. Meta redelivers a message it thinks was not
 * received, and a second run would answer twice, or move a menu on by a step the person never took.
 * The keys share `idempotency_keys` (pruned after two days; Meta gives up retrying well before).
 */
async function firstDelivery(db: Db, messageId: string, at: Date): Promise<boolean> {
  const claimed = await db
    .insert(idempotencyKeys)
    .values({ key: `${CHANNEL}:message:${messageId}`, createdAt: at })
    .onConflictDoNothing()
    .returning({ key: idempotencyKeys.key });
  return claimed.length > 0;
}

/**
 * The phone this chat speaks for: a linked customer's, else the sender's own served number.
 * WhatsApp has already proved the sender owns the number, so the first message from a customer's
 * phone links the chat (`phone`); an unlinked chat is looked up again each time, so a number given
 * to a customer later links on its next message.
 */
async function customerPhone(
  deps: WhatsAppDeps,
  waId: string,
): Promise<{ phone: string | null; newlyLinked: string | null }> {
  const [linked] = await deps.db
    .select({ phone: customers.phone })
    .from(chatLinks)
    .innerJoin(customers, eq(customers.id, chatLinks.customerId))
    .where(and(eq(chatLinks.channel, CHANNEL), eq(chatLinks.chatId, waId)));
  if (linked) return { phone: linked.phone, newlyLinked: null };

  const verdict = checkPhone(`+${waId}`, deps.servedCountries);
  if (verdict.kind !== "served") return { phone: null, newlyLinked: null };
  const [customer] = await deps.db
    .select({ id: customers.id, phone: customers.phone, accountNumber: customers.accountNumber })
    .from(customers)
    .where(eq(customers.phone, verdict.e164));
  // A visitor's number is as proven as a customer's: it is the phone M-Pesa asks when they buy a
  // voucher, so WhatsApp never needs to ask for it (chat-menu's `needsPhone` stays unset).
  if (!customer) return { phone: verdict.e164, newlyLinked: null };
  const inserted = await deps.db
    .insert(chatLinks)
    .values({ channel: CHANNEL, chatId: waId, customerId: customer.id, method: "phone" })
    .onConflictDoNothing()
    .returning({ id: chatLinks.id });
  return { phone: customer.phone, newlyLinked: inserted.length > 0 ? customer.accountNumber : null };
}

export async function handleMessage(deps: WhatsAppDeps, message: InboundMessage): Promise<void> {
  if (!(await firstDelivery(deps.db, message.id, deps.clock.now()))) {
    deps.logger.debug({ messageId: message.id }, "whatsapp message already handled");
    return;
  }
  const { phone, newlyLinked } = await customerPhone(deps, message.waId);
  if (message.input === null) {
    await deps.graph.send(message.waId, textMessage(waText("en", "unsupported")));
    return;
  }
  const reply = await deps.chatMenu.handle({
    channel: CHANNEL,
    chatId: message.waId,
    phone,
    input: message.input,
  });
  if (reply.kind === "stale") {
    // Nothing changed: the person is told so and keeps the newest menu they were sent.
    const key = message.input.kind === "option" ? "stale" : "typeNumber";
    await deps.graph.send(message.waId, textMessage(waText(reply.language, key)));
    return;
  }
  if (newlyLinked !== null)
    await deps.graph.send(
      message.waId,
      textMessage(waText(reply.view.language, "linked", { account: newlyLinked })),
    );
  await deps.graph.send(message.waId, renderView(reply.view));
}
