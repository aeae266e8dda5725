import { desc, eq, inArray } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { enqueueMessage } from "../../src/billing/outbox.ts";
import { readChatState } from "../../src/bots/chat-state.ts";
import { FakeClock } from "../../src/clock.ts";
import {
  channelSessions,
  chatLinkCodes,
  chatLinks,
  chatReplyRoutes,
  chatSessions,
  customers,
  messageOutbox,
} from "../../src/db/schema/index.ts";
import { activeSubscriber, createPlan } from "../support/billing.ts";
import { adminWorldForFile, auditRows, lastMenuIn, lastText, OWNER } from "./world.ts";

/** `/customer_edit`: a customer's new phone number (their chats unlinked) or corrected name. */

const clock = new FakeClock("2026-05-01T08:00:00Z");
const SUPPORT = 6_800_002;
const world = adminWorldForFile(clock, [{ id: SUPPORT, role: "support", name: "Sam" }]);

describe("/customer_edit", () => {
  it("moves a customer to a new SIM once confirmed, unlinking their chats; renames them", async () => {
    const plan = await createPlan(world.db, { priceCents: 100_000 });
    const { customer } = await activeSubscriber(world.ctx, plan.id, "Old Sim");
    const other = await activeSubscriber(world.ctx, plan.id, "Someone Else");
    const acct = customer.accountNumber;
    // Linked on Telegram and on WhatsApp Web (its chat id is the old number), a code pending.
    await world.db.insert(chatLinks).values([
      { channel: "telegram", chatId: "7000001", customerId: customer.id, method: "contact" },
      { channel: "whatsapp", chatId: customer.phone.slice(1), customerId: customer.id, method: "phone" },
      { channel: "telegram", chatId: "7000002", customerId: other.customer.id, method: "contact" },
    ]);
    await world.db.insert(chatSessions).values([
      { channel: "telegram", chatId: "7000001", sessionKey: "k1", lastActivityAt: clock.now() },
      { channel: "telegram", chatId: "7000002", sessionKey: "k2", lastActivityAt: clock.now() },
    ]);
    await world.db.insert(chatLinkCodes).values({
      channel: "telegram",
      chatId: "7000009",
      customerId: customer.id,
      codeHash: "x",
      expiresAt: clock.now(),
    });
    // Queued when the phone changes: an SMS to the old number, a notice and a menu answer for the
    // Telegram chat that is about to be unlinked.
    const queued = await world.db
      .insert(messageOutbox)
      .values(
        [
          { channel: "sms" as const, recipient: customer.phone, template: "payment_received" },
          {
            channel: "telegram" as const,
            recipient: "7000001",
            template: "payment_received",
            fallbackRecipient: customer.phone,
          },
          {
            channel: "telegram" as const,
            recipient: "7000001",
            template: "chat",
            content: { kind: "text", text: "1" },
          },
        ].map((m) => ({
          ...m,
          params: { amountCents: 100 },
          nextAttemptAt: clock.now(),
          createdAt: clock.now(),
        })),
      )
      .returning({ id: messageOutbox.id });
    const phoneOf = async (id: number) =>
      (await world.db.select().from(customers).where(eq(customers.id, id)))[0]!;

    await world.say(SUPPORT, `/customer_edit ${acct} phone 0722 000 111`);
    expect(lastText(world.fake, SUPPORT)).toMatch(/Your role \(support\) may not use \/customer_edit/);
    for (const [typed, answer] of [
      ["/customer_edit", /Say the account number/],
      [`/customer_edit ${acct} email a@b.c`, /Say what to change: phone or name/],
      [`/customer_edit ${acct} phone`, /Say the new phone/],
      [`/customer_edit ${acct} phone 12`, /"12" is not a phone number/],
      // As every channel, the import and the CLI read it: a country not served, a landline.
      [`/customer_edit ${acct} phone +255 712 345 678`, /a country this ISP does not serve/],
      [`/customer_edit ${acct} phone 020 1234567`, /"020 1234567" is not a phone number/],
      [
        `/customer_edit ${acct} phone ${other.customer.phone}`,
        new RegExp(`is already account ${other.customer.accountNumber}`),
      ],
      ["/customer_edit NOSUCH9 name X", /^No account NOSUCH9\. Try \/find\.$/],
    ] as const) {
      await world.say(OWNER, typed);
      expect(lastText(world.fake, OWNER)).toMatch(answer);
    }

    await world.say(OWNER, `/customer_edit ${acct} phone 0722 000 111`);
    expect(String(lastMenuIn(world.fake, OWNER).payload.text)).toMatch(
      new RegExp(
        `^Old Sim \\(phone .*\\): move ${acct} to phone 0722 000111\\? The chats linked to the account will be unlinked\\.`,
      ),
    );
    expect((await phoneOf(customer.id)).phone).toBe(customer.phone);
    await world.press(OWNER, "Confirm");
    expect(lastText(world.fake, OWNER)).toBe(
      `✅ ${acct} is now on 0722 000111: USSD, M-Pesa prompts and SMS use it from now on. 2 chats linked to the account were unlinked: the customer links again from the new number.`,
    );
    expect((await phoneOf(customer.id)).phone).toBe("+254722000111");
    const links = await world.db.select().from(chatLinks);
    expect(links.map((l) => l.chatId)).toEqual(["7000002"]);
    expect((await world.db.select().from(chatSessions)).map((s) => s.chatId)).toEqual(["7000002"]);
    expect(await world.db.select().from(chatLinkCodes)).toEqual([]);
    const after = await world.db
      .select()
      .from(messageOutbox)
      .where(
        inArray(
          messageOutbox.id,
          queued.map((q) => q.id),
        ),
      )
      .orderBy(messageOutbox.id);
    expect(after.map((m) => [m.channel, m.recipient, m.status])).toEqual([
      ["sms", "+254722000111", "pending"],
      ["sms", "+254722000111", "pending"],
      ["telegram", "7000001", "superseded"],
    ]);
    expect(await auditRows(world.db, "customer.phone_changed", `tg:${OWNER}`)).toMatchObject([
      {
        entityId: String(customer.id),
        details: { from: customer.phone, to: "+254722000111", chatsUnlinked: 2 },
      },
    ]);

    await world.say(OWNER, `/customer_edit ${acct} name Achieng Otieno`);
    expect(String(lastMenuIn(world.fake, OWNER).payload.text)).toMatch(
      /^Old Sim: rename TD\w+ to Achieng Otieno\?/,
    );
    await world.press(OWNER, "Confirm");
    expect(lastText(world.fake, OWNER)).toBe(`✅ ${acct} is now Achieng Otieno.`);
    expect((await phoneOf(customer.id)).name).toBe("Achieng Otieno");
  });

  it("leaves no chat that still speaks for the account by its old number", async () => {
    const plan = await createPlan(world.db, { priceCents: 100_000 });
    const { customer } = await activeSubscriber(world.ctx, plan.id, "Sold Sim");
    // One chat linked from the number it had shared as a visitor, one that shared it and never linked.
    await world.db
      .insert(chatLinks)
      .values({ channel: "telegram", chatId: "7100001", customerId: customer.id, method: "contact" });
    await world.db.update(customers).set({ notifyChannel: "telegram" }).where(eq(customers.id, customer.id));
    await world.db.insert(channelSessions).values(
      ["7100001", "7100002"].map((chatId) => ({
        id: `telegram:phone:${chatId}`,
        channel: "telegram",
        phone: customer.phone,
        updatedAt: clock.now(),
      })),
    );
    // A payment confirmed a moment ago in the linked chat: its results were to come back there.
    await world.db.insert(chatReplyRoutes).values({
      phone: customer.phone,
      channel: "telegram",
      chatId: "7100001",
      until: new Date(clock.now().getTime() + 60 * 60_000),
    });

    await world.say(OWNER, `/customer_edit ${customer.accountNumber} phone 0722 000 222`);
    await world.press(OWNER, "Confirm");
    // Whoever gets the old number next must not be found behind these chats: they speak for no one.
    for (const chatId of ["7100001", "7100002"])
      expect(await readChatState(world.db, "telegram", chatId, undefined)).toMatchObject({
        phone: null,
        linked: false,
        customer: null,
      });
    // What is sent to the old number now is its next holder's: an SMS, not a message in that chat.
    await enqueueMessage(world.db, clock.now(), {
      recipient: customer.phone,
      language: "en",
      template: "payment_received",
      params: { amountCents: 100, balanceCents: 0, account: "TD99999", receipt: "SAB12CD36" },
    });
    const [sent] = await world.db
      .select()
      .from(messageOutbox)
      .where(eq(messageOutbox.template, "payment_received"))
      .orderBy(desc(messageOutbox.id))
      .limit(1);
    expect(sent).toMatchObject({ channel: "sms", recipient: customer.phone });
    // No chat is theirs now: the next one they link (WhatsApp's first message included) is chosen.
    const [after] = await world.db.select().from(customers).where(eq(customers.id, customer.id));
    expect(after?.notifyChannel).toBeNull();
  });
});
