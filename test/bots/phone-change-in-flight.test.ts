import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { editCustomer } from "../../src/billing/customer-edit.ts";
import { deliverDueChats } from "../../src/bots/chat-delivery.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Database } from "../../src/db/client.ts";
import { chatLinks, customers, messageOutbox } from "../../src/db/schema/index.ts";
import { deliverDueSms } from "../../src/messaging/sms-worker.ts";
import { admin, billingContext } from "../support/billing.ts";
import { createTestDatabase } from "../support/db.ts";
import { recordingSender } from "./recording-sender.ts";

/**
 * A customer's phone changes while a chat worker is sending them a notice: their chats are unlinked,
 * and what was queued for them goes by SMS to the new number. The notice already on its way to the
 * chat must not be sent a second time by SMS.
 */

let database: Database;
const clock = new FakeClock("2026-08-01T06:00:00Z");
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.close();
});

describe("a phone change while a notice is being sent to the customer's chat", () => {
  it("the notice is delivered once, in the chat, and recorded so", async () => {
    const { ctx } = billingContext(database.db, clock);
    const [customer] = await database.db
      .insert(customers)
      .values({ accountNumber: "A901", phone: "+254700000901", name: "Wanjiru", notifyChannel: "telegram" })
      .returning();
    await database.db
      .insert(chatLinks)
      .values({ channel: "telegram", chatId: "901", customerId: customer!.id, method: "contact" });
    // A receipt, written as an SMS: the routing trigger sends it to the customer's Telegram chat.
    await database.db.insert(messageOutbox).values({
      channel: "sms",
      recipient: "+254700000901",
      language: "en",
      template: "payment_received",
      params: { amountCents: 100_000, receipt: "QX1", account: "A901", balanceCents: 0 },
      nextAttemptAt: clock.now(),
      createdAt: clock.now(),
    });
    // Telegram has the message and is slow to answer; meanwhile an admin records a new SIM.
    const { sender, got, letGo } = recordingSender({ hold: true });
    const pass = deliverDueChats({ db: database.db, clock, senders: [sender], isp: "Net" });
    await expect.poll(() => got.length).toBe(1);
    await editCustomer(ctx, admin, {
      customerId: customer!.id,
      change: { field: "phone", phone: "+254711000901" },
    });
    letGo();
    expect((await pass).sent).toBe(1);

    // Past the chat worker's lease on the row: the SMS worker finds nothing to send.
    clock.advance(61_000);
    const sms: string[] = [];
    await deliverDueSms({
      db: database.db,
      clock,
      isp: "Net",
      sender: {
        send: async (to, text) => {
          sms.push(`${to}: ${text}`);
          return { messageId: "at-1" };
        },
      },
    });
    expect({ telegram: got, sms }).toEqual({ telegram: [expect.stringMatching(/^901:/)], sms: [] });
    const [row] = await database.db
      .select()
      .from(messageOutbox)
      .where(eq(messageOutbox.template, "payment_received"));
    expect(row).toMatchObject({ status: "done", channel: "telegram", recipient: "901" });
  });
});
