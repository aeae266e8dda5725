import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { linkChat } from "../../src/billing/chat-links.ts";
import { editCustomer } from "../../src/billing/customer-edit.ts";
import { phoneChat } from "../../src/bots/phone-link.ts";
import { FakeClock } from "../../src/clock.ts";
import type { Db } from "../../src/db/client.ts";
import { chatLinks, customers } from "../../src/db/schema/index.ts";
import { waitFor } from "../network/support.ts";
import { admin, billingContext } from "../support/billing.ts";
import { createTestDatabase, onRealPostgres, type TestDatabase } from "../support/db.ts";
import { sessionsWaitingForLocks } from "../support/locks.ts";

/**
 * A WhatsApp message from a customer's old number, or a Telegram contact card of it, while an admin
 * moves the account to a new one (link codes: link-code-phone-race.test.ts): the chat must not end
 * up linked to the account (its receipts, reminders and router login would
 * go to the old number's owner for good).
 */

let database: TestDatabase;
const clock = new FakeClock("2026-08-01T06:00:00Z");
beforeAll(async () => {
  database = await createTestDatabase({ maxConnections: 4 });
});
afterAll(async () => {
  await database?.close();
});

/**
 * Runs `link` (as the chat would, from the old number) while an admin's move of the account to a
 * new number is written and not yet committed; returns what `link` gave.
 */
async function duringPhoneChange<T>(accountNumber: string, oldPhone: string, link: () => Promise<T>) {
  const db = database.db;
  const [customer] = await db
    .insert(customers)
    .values({ accountNumber, phone: oldPhone, name: "New Sim" })
    .returning();
  let letCommit!: () => void;
  const commit = new Promise<void>((resolve) => {
    letCommit = resolve;
  });
  let saved!: () => void;
  const written = new Promise<void>((resolve) => {
    saved = resolve;
  });
  // The admin's change, written and not yet committed.
  const change = db.transaction(async (tx) => {
    const { ctx } = billingContext(tx as unknown as Db, clock);
    await editCustomer(ctx, admin, {
      customerId: customer!.id,
      change: { field: "phone", phone: `+2547110${oldPhone.slice(-5)}` },
    });
    saved();
    await commit;
  });
  await written;
  const before = await sessionsWaitingForLocks(db);
  const linking = link();
  // The link waits for the change (the customer row is locked), then reads the number again.
  await waitFor(async () => (await sessionsWaitingForLocks(db)) > before);
  letCommit();
  await change;
  const result = await linking;
  const links = await db.select().from(chatLinks).where(eq(chatLinks.customerId, customer!.id));
  return { result, links };
}

describe.runIf(onRealPostgres())("a chat of the old number during a phone change", () => {
  it("WhatsApp: is not linked to the account once the change is saved", async () => {
    const { result, links } = await duringPhoneChange("TDRACE1", "+254700000777", () =>
      phoneChat(database.db, "whatsapp", "254700000777"),
    );
    expect(result).toEqual({ phone: "+254700000777", newlyLinked: null });
    expect(links).toEqual([]);
  });

  it("Telegram, by the contact it shares: is not linked to the account once the change is saved", async () => {
    const { result, links } = await duringPhoneChange("TDRACE2", "+254700000778", async () => {
      const [customer] = await database.db
        .select({ id: customers.id })
        .from(customers)
        .where(eq(customers.accountNumber, "TDRACE2"));
      return database.db.transaction((tx) =>
        linkChat(tx, {
          channel: "telegram",
          chatId: "7770002",
          customerId: customer!.id,
          method: "contact",
          at: clock.now(),
          phone: "+254700000778",
        }),
      );
    });
    expect(result).toBe(false);
    expect(links).toEqual([]);
  });
});
