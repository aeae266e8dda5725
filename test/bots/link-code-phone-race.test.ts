import { and, desc, eq } from "drizzle-orm";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { editCustomer } from "../../src/billing/customer-edit.ts";
import { checkLinkCode, requestLinkCode } from "../../src/bots/telegram/link-code.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Db } from "../../src/db/client.ts";
import {
  chatLinkCodes,
  chatLinks,
  customers,
  messageOutbox,
  rateLimitWindows,
} from "../../src/db/schema/index.ts";
import { requireBox } from "../../src/db/sealed.ts";
import { waitFor } from "../network/support.ts";
import { admin, billingContext } from "../support/billing.ts";
import { createTestDatabase, onRealPostgres, type TestDatabase } from "../support/db.ts";
import { holdLock, sessionsWaitingForLocks } from "../support/locks.ts";

/**
 * A Telegram chat linking by account number and SMS code while an admin moves the account to a new
 * phone (a new SIM; the old number may be someone else's soon). Whoever holds the old number must
 * not end up with the account's chat: its receipts, reminders and router login.
 */

let database: TestDatabase;
const clock = new FakeClock("2026-08-01T06:00:00Z");
const OLD_PHONE = "+254700000888";
const NEW_PHONE = "+254711000888";
const CHAT = "8880001";

beforeAll(async () => {
  database = await createTestDatabase({ maxConnections: 4 });
});
afterAll(async () => {
  await database?.close();
});

async function theCustomer(accountNumber: string, phone: string) {
  const [row] = await database.db
    .insert(customers)
    .values({ accountNumber, phone, name: "Moving Sim" })
    .returning();
  return row!;
}

/** The admin's phone change, in a transaction of its own. */
const changePhone = (customerId: number) =>
  database.db.transaction(async (tx) => {
    const { ctx } = billingContext(tx as unknown as Db, clock);
    await editCustomer(ctx, admin, { customerId, change: { field: "phone", phone: NEW_PHONE } });
  });

/** Settles when `work` ends or `n` sessions wait for a lock, whichever comes first. */
const endsOrWaits = (work: Promise<unknown>, n: number) =>
  Promise.race([
    work.then(
      () => undefined,
      () => undefined,
    ),
    waitFor(async () => (await sessionsWaitingForLocks(database.db)) >= n),
  ]);

describe.runIf(onRealPostgres())("linking by SMS code during a phone change", () => {
  beforeEach(async () => {
    await database.db.delete(chatLinks);
    await database.db.delete(chatLinkCodes);
    await database.db.delete(messageOutbox);
    await database.db.delete(rateLimitWindows);
    await database.db.delete(customers);
  });

  it("a code asked for while the change is saved goes to the new number, and the change deletes it", async () => {
    const customer = await theCustomer("TDOTP1", OLD_PHONE);
    // The request is held at its rate window, after it read the account.
    await database.db
      .insert(rateLimitWindows)
      .values({ key: `link-code:telegram:${CHAT}`, hits: [], updatedAt: clock.now() });
    const holding = await holdLock(
      database.url!,
      (tx) => tx`select key from rate_limit_windows where key = ${`link-code:telegram:${CHAT}`} for update`,
    );
    const before = await sessionsWaitingForLocks(database.db);
    const request = requestLinkCode(database.db, {
      channel: "telegram",
      chatId: CHAT,
      account: "TDOTP1",
      now: clock.now(),
    });
    try {
      await waitFor(async () => (await sessionsWaitingForLocks(database.db)) > before);
      const change = changePhone(customer.id);
      // The change either waits for the request (the account is locked) or is saved meanwhile.
      await endsOrWaits(change, before + 2);
      await holding.release();
      expect(await request).toMatchObject({ kind: "sent" });
      await change;
    } finally {
      await holding.release();
    }
    const texts = await database.db
      .select({ recipient: messageOutbox.recipient })
      .from(messageOutbox)
      .where(eq(messageOutbox.template, "chat_link_code"));
    expect(texts).toEqual([{ recipient: NEW_PHONE }]);
    expect(await database.db.select().from(chatLinkCodes)).toEqual([]);
  });

  it("a right code typed while the change is saved leaves the chat unlinked from the account", async () => {
    const customer = await theCustomer("TDOTP2", OLD_PHONE);
    const other = await theCustomer("TDOTP3", "+254722000888");
    // The chat was another account's: linking it waits on that link's row, holding what it locked.
    await database.db.insert(chatLinks).values({
      channel: "telegram",
      chatId: CHAT,
      customerId: other.id,
      method: "otp",
      linkedAt: clock.now(),
    });
    await requestLinkCode(database.db, {
      channel: "telegram",
      chatId: CHAT,
      account: "TDOTP2",
      now: clock.now(),
    });
    const [sms] = await database.db
      .select({ params: messageOutbox.params })
      .from(messageOutbox)
      .where(eq(messageOutbox.template, "chat_link_code"));
    const code = requireBox().open(String((sms!.params as { code: string }).code));

    const holding = await holdLock(
      database.url!,
      (tx) => tx`select id from chat_links where channel = 'telegram' and chat_id = ${CHAT} for update`,
    );
    const before = await sessionsWaitingForLocks(database.db);
    const check = checkLinkCode(database.db, { channel: "telegram", chatId: CHAT, code, now: clock.now() });
    let change: Promise<void> | undefined;
    try {
      await waitFor(async () => (await sessionsWaitingForLocks(database.db)) > before);
      change = changePhone(customer.id);
      await waitFor(async () => (await sessionsWaitingForLocks(database.db)) > before + 1);
      await holding.release();
      expect(await check).toMatchObject({ kind: "linked", accountNumber: "TDOTP2" });
      await change;
    } finally {
      await holding.release();
      await change?.catch(() => undefined);
    }
    const [moved] = await database.db
      .select({ phone: customers.phone })
      .from(customers)
      .where(eq(customers.id, customer.id));
    expect(moved!.phone).toBe(NEW_PHONE);
    const links = await database.db
      .select()
      .from(chatLinks)
      .where(and(eq(chatLinks.channel, "telegram"), eq(chatLinks.chatId, CHAT)));
    expect(links).toEqual([]);
  });

  it("two chats typing right codes for one account at once both link", async () => {
    await theCustomer("TDOTP4", OLD_PHONE);
    const chats = ["8880011", "8880012"];
    const codes: string[] = [];
    for (const chatId of chats) {
      await requestLinkCode(database.db, {
        channel: "telegram",
        chatId,
        account: "TDOTP4",
        now: clock.now(),
      });
      const [sms] = await database.db
        .select({ params: messageOutbox.params })
        .from(messageOutbox)
        .where(eq(messageOutbox.template, "chat_link_code"))
        .orderBy(desc(messageOutbox.id))
        .limit(1);
      codes.push(requireBox().open(String((sms!.params as { code: string }).code)));
    }
    // Both checks reach the account together: each code is held by another session meanwhile.
    const holding = await holdLock(
      database.url!,
      (tx) => tx`select id from chat_link_codes where chat_id in ${tx(chats)} for update`,
    );
    const before = await sessionsWaitingForLocks(database.db);
    let checks: Array<Awaited<ReturnType<typeof checkLinkCode>>>;
    try {
      const checking = chats.map((chatId, i) =>
        checkLinkCode(database.db, { channel: "telegram", chatId, code: codes[i]!, now: clock.now() }),
      );
      await waitFor(async () => (await sessionsWaitingForLocks(database.db)) >= before + 2);
      await holding.release();
      checks = await Promise.all(checking);
    } finally {
      await holding.release();
    }
    expect(checks.map((c) => c.kind)).toEqual(["linked", "linked"]);
    const links = await database.db.select({ chatId: chatLinks.chatId }).from(chatLinks);
    expect(links.map((l) => l.chatId).sort()).toEqual(chats);
  });
});
